"""The learned and auto interpolation engines: training, self-validation, fallback, resume."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen import api
from napari_scigen.core.progress import Cancelled, CancelToken, drain
from napari_scigen.core.validation import InvalidInputError
from napari_scigen.engines.interpolation.learned import run_learned
from napari_scigen.engines.learned.geometry import linear_fill, training_geometry
from napari_scigen.engines.learned.params import LearnedInterpolateParams

pytest.importorskip("torch")

from learned_tiny import TINY  # noqa: E402

MISSING = (1, 5, 9)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """Smooth blobs drifting along z with a little noise (uint16)."""
    z, y, x = np.indices((12, 24, 24))
    blobs = np.zeros(z.shape)
    for cy, cx, r in ((7, 7, 5), (16, 15, 6)):
        blobs += (y - cy - 0.5 * z) ** 2 + (x - cx) ** 2 <= r**2
    noise = np.random.default_rng(0).normal(0, 300, z.shape)
    return (20000 + 15000 * np.clip(blobs, 0, 1) + noise).clip(0, 65535).astype(np.uint16)


def _learned(volume, **overrides):
    return api.interpolate(volume, method="learned", missing=MISSING, **{**TINY, **overrides})


def test_kept_slices_dtype_range_and_input_are_preserved(volume):
    before = volume.copy()
    result = _learned(volume)
    kept = [z for z in range(volume.shape[0]) if z not in MISSING]
    np.testing.assert_array_equal(result.data[kept], volume[kept])
    np.testing.assert_array_equal(volume, before)
    assert result.data.dtype == volume.dtype and result.data.shape == volume.shape
    assert volume.min() <= result.data.min() and result.data.max() <= volume.max()
    extra = result.provenance["extra"]
    assert result.provenance["engine"] == "interpolate-learned"
    assert extra["exact_supervision"] and extra["training"]["steps"] == TINY["train_steps"]
    assert "assumed isotropic" in extra["assumptions"][0]
    assert set(extra["self_validation"]["scores"]) == {"learned", "linear", "flow"}


def test_z_upsampling_keeps_the_source_slices_and_shrinks_the_voxel(volume):
    result = api.interpolate(volume[:6], method="learned", factor=2, force_learned=True, **TINY)
    assert result.provenance["extra"]["filled_with"] == "learned"
    assert result.data.shape == (11, 24, 24)
    np.testing.assert_array_equal(result.data[::2], volume[:6])
    assert result.voxel_scale == (0.5, 1.0, 1.0)
    assert result.output_voxel_size((2.0, 1.0, 1.0)) == (1.0, 1.0, 1.0)


def test_training_lowers_the_loss_on_a_fixed_batch(volume):
    import torch

    from napari_scigen.core.progress import Progress
    from napari_scigen.engines.interpolation.plan import plan_slices
    from napari_scigen.engines.learned.geometry import make_grid
    from napari_scigen.engines.learned.networks import UNetConfig, build_network
    from napari_scigen.engines.learned.sampling import InterpolationSampler, in_plane_sources
    from napari_scigen.engines.learned.training import reconstruction_loss, train_network

    grid = make_grid(volume, plan_slices(12, missing=MISSING))
    rng = np.random.default_rng(0)
    sources = in_plane_sources(grid.volume, np.flatnonzero(grid.known), 1.0, 1.0)
    sampler = InterpolationSampler(
        grid.volume, grid.known, {2}, sources, 0.5, (12, 16), ("xz", "yz"), rng
    )
    fixed = InterpolationSampler(
        grid.volume, grid.known, {2}, sources, 0.5, (12, 16), ("xz", "yz"), np.random.default_rng(9)
    ).sample(32)
    params = LearnedInterpolateParams(**{**TINY, "train_steps": 80, "learning_rate": 3e-3})
    network = build_network(UNetConfig(2, 8), seed=0)

    def loss() -> float:
        inputs = torch.from_numpy(fixed.inputs)
        with torch.no_grad():
            prediction = inputs[:, :1] + network(inputs)
        return float(
            reconstruction_loss(
                prediction,
                torch.from_numpy(fixed.target),
                torch.from_numpy(fixed.weight),
                inputs[:, :1],
                params.replace(loss="l2"),
            )
        )

    before = loss()
    job = train_network(
        network,
        sampler.sample,
        params.replace(loss="l2"),
        device="cpu",
        task_key="test",
        rng=rng,
        progress=lambda f, m: Progress(int(100 * f), 100, m),
        label="test",
    )
    report = drain(job)
    assert report.steps == 80 and loss() < 0.9 * before


def test_the_same_seed_gives_the_same_bytes_on_a_cpu(volume):
    first = _learned(volume, seed=3, force_learned=True)
    second = _learned(volume, seed=3, force_learned=True)
    assert first.provenance["extra"]["filled_with"] == "learned"
    assert first.data.tobytes() == second.data.tobytes()
    other = _learned(volume, seed=4, force_learned=True)
    assert other.data.tobytes() != first.data.tobytes()


def test_cancelled_training_resumes_from_its_checkpoint_to_the_same_result(volume, tmp_path):
    params = LearnedInterpolateParams(
        **{**TINY, "train_steps": 10, "checkpoint_dir": str(tmp_path), "checkpoint_every": 4}
    )
    token = CancelToken()

    def stop_midway(event):
        if "training step 6/" in event.message:
            token.cancel()

    with pytest.raises(Cancelled):
        drain(run_learned(volume, params, missing=MISSING, cancel=token), on_progress=stop_midway)
    assert sorted(p.name for p in tmp_path.iterdir())[-1] == "checkpoint-0000006"
    resumed = drain(run_learned(volume, params, missing=MISSING))
    training = resumed.provenance["extra"]["training"]
    assert training["resumed_from"].endswith("checkpoint-0000006") and training["steps"] == 10
    uninterrupted = _learned(volume, train_steps=10)
    assert resumed.data.tobytes() == uninterrupted.data.tobytes()


def test_a_checkpoint_of_another_volume_is_refused(volume, tmp_path):
    _learned(volume, checkpoint_dir=str(tmp_path))
    with pytest.raises(InvalidInputError, match="another volume"):
        _learned(volume[:, ::-1].copy(), checkpoint_dir=str(tmp_path))


def test_uncertainty_is_a_non_negative_map_that_is_zero_on_kept_slices(volume):
    result = _learned(volume, force_learned=True)
    uncertainty = result.images["uncertainty"]
    assert uncertainty.shape == volume.shape and uncertainty.dtype == np.float32
    assert (uncertainty >= 0).all() and uncertainty[list(MISSING)].max() > 0
    kept = [z for z in range(volume.shape[0]) if z not in MISSING]
    assert not uncertainty[kept].any()
    assert "uncertainty" not in _learned(volume, uncertainty=False, force_learned=True).images


def _ramp() -> np.ndarray:
    """A float volume exactly linear in z: linear interpolation is perfect, nothing to learn."""
    field = np.random.default_rng(1).normal(0, 1, (2, 24, 24)).astype(np.float32)
    z = np.arange(12, dtype=np.float32)[:, None, None]
    return field[0] + z * field[1]


def test_learned_that_loses_self_validation_falls_back_to_linear_loudly():
    ramp = _ramp()
    messages = []
    result = api.interpolate(
        ramp,
        method="learned",
        missing=MISSING,
        on_progress=lambda e: messages.append(e.message),
        **TINY,
    )
    extra = result.provenance["extra"]
    assert extra["learned_lost_self_validation"] and extra["filled_with"] == "linear"
    assert any(
        "LEARNED LOST SELF-VALIDATION" in m and "falling back to linear" in m for m in messages
    )
    linear = api.interpolate(ramp, method="linear", missing=MISSING)
    np.testing.assert_array_equal(result.data, linear.data)
    assert "uncertainty" not in result.images
    forced = api.interpolate(ramp, method="learned", missing=MISSING, force_learned=True, **TINY)
    assert forced.provenance["extra"]["filled_with"] == "learned"
    assert forced.provenance["extra"]["learned_lost_self_validation"]


def test_auto_picks_linear_where_learning_cannot_help_and_says_why():
    messages = []
    result = api.interpolate(
        _ramp(),
        method="auto",
        missing=MISSING,
        on_progress=lambda e: messages.append(e.message),
        **TINY,
    )
    extra = result.provenance["extra"]
    assert result.provenance["engine"] == "interpolate-auto"
    assert extra["filled_with"] == "linear" and "self-validation" in extra["choice_reason"]
    assert any(m.startswith("auto: filling with linear") for m in messages)


def test_training_geometry_is_exact_for_drop_every_and_doubled_for_keep_every():
    drop = np.ones(60, bool)
    drop[1::4] = False
    geometry = training_geometry(drop, 2)
    assert geometry.exact and geometry.blank_gaps == {2} and len(geometry.validation_rows) == 2
    assert all(drop[r] for r in geometry.validation_rows)
    # at most a sixth of the blankable kept slices is held out: 5 blankable -> 1
    assert len(training_geometry(drop[:24], 2).validation_rows) == 1
    keep = np.zeros(25, bool)
    keep[::4] = True
    coarse = training_geometry(keep, 2)
    assert not coarse.exact and coarse.blank_gaps == {8}
    assert all(keep[r] for r in coarse.validation_rows)


def test_linear_fill_blends_the_known_neighbours():
    rows = np.arange(5, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    known = np.array([True, False, False, True, True])
    filled = linear_fill(np.where(known[:, None], rows, 99.0), known)
    np.testing.assert_allclose(filled, rows)


def test_auto_falls_back_to_linear_on_independent_noise_slices():
    noise = np.random.default_rng(5).normal(1000, 50, (12, 24, 24)).astype(np.float32)
    result = api.interpolate(noise, method="auto", missing=MISSING, **TINY)
    extra = result.provenance["extra"]
    assert extra["filled_with"] in {"linear", "flow"}
    scores = extra["self_validation"]["scores"]
    assert scores[extra["filled_with"]]["psnr"] >= scores["learned"]["psnr"]
    if extra["filled_with"] == "linear":
        linear = api.interpolate(noise, method="linear", missing=MISSING)
        np.testing.assert_array_equal(result.data, linear.data)


def test_the_cli_writes_the_uncertainty_map_beside_the_output(volume, tmp_path):
    import tifffile

    from napari_scigen.cli import main

    source = tmp_path / "scan.tif"
    tifffile.imwrite(source, volume)
    before = source.read_bytes()
    out, spread = tmp_path / "filled.tif", tmp_path / "spread.tif"
    flags = ["--train-steps", "4", "--init", "scratch", "--crop-size", "16"]
    flags += ["--base-channels", "8", "--validation-slices", "2", "--force-learned"]
    argv = ["interpolate", str(source), "--missing", "1,5,9", "--method", "learned"]
    assert main([*argv, *flags, "-o", str(out), "--uncertainty-out", str(spread), "-q"]) == 0
    uncertainty = tifffile.imread(spread)
    assert uncertainty.shape == volume.shape and uncertainty.dtype == np.float32
    assert (uncertainty >= 0).all() and uncertainty[[1, 5, 9]].max() > 0
    assert source.read_bytes() == before
    # the same path for both outputs is refused before any work is done
    again = ["-o", str(tmp_path / "b.tif"), "--uncertainty-out", str(tmp_path / "b.tif")]
    assert main([*argv, *flags, *again, "-q"]) == 2
    assert not (tmp_path / "b.tif").exists()


def test_a_gap_neither_check_can_measure_is_filled_classically_unless_forced(volume):
    # keep every 3rd slice: blanking a kept slice gives gap 6, never the job's gap 3, and
    # with no kept xy slice held out for the in-plane check nothing measures the network's
    # error at gap 3, so learned says so in words (no option names) and fills with linear
    missing = tuple(z for z in range(10) if z % 3)  # kept 0, 3, 6, 9
    messages = []
    unchecked = {**TINY, "in_plane_check_slices": 0}
    result = api.interpolate(
        volume, method="learned", missing=missing, on_progress=lambda e: messages.append(e.message),
        **unchecked,
    )  # fmt: skip
    extra = result.provenance["extra"]
    assert extra["filled_with"] == "linear" and extra["learned_not_verifiable"]
    assert extra["decided_by"] == "not verifiable"
    assert extra["training"] is None and "uncertainty" not in result.images
    assert any("NOT VERIFIABLE" in m for m in messages)
    assert not any("--" in m or "force_learned" in m for m in messages)
    linear = api.interpolate(volume, method="linear", missing=missing)
    np.testing.assert_array_equal(result.data, linear.data)
    auto = api.interpolate(volume, method="auto", missing=missing, **unchecked)
    scores = auto.provenance["extra"]["self_validation"]["scores"]
    assert set(scores) == {"linear", "flow"}
    assert auto.provenance["extra"]["filled_with"] == max(scores, key=lambda m: scores[m]["psnr"])
    forced = api.interpolate(
        volume, method="learned", missing=missing, force_learned=True, **unchecked
    )
    assert forced.provenance["extra"]["filled_with"] == "learned"
