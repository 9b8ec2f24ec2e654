"""StyleGAN slice interpolation, random slices and latent walks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_scigen.core.progress import Cancelled, CancelToken, drain  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.engines.stylegan.checkpoint import save_generator  # noqa: E402
from napari_scigen.engines.stylegan.interpolate import run_interpolate_stylegan  # noqa: E402
from napari_scigen.engines.stylegan.params import (  # noqa: E402
    StyleGANInterpolateParams,
    StyleGANSampleParams,
    StyleGANWalkParams,
)
from napari_scigen.engines.stylegan.sample import (  # noqa: E402
    latent_walk,
    run_latent_walk,
    run_sample_slices,
)
from stylegan_tiny import textured_volume, tiny_generator  # noqa: E402

torch.set_num_threads(1)

# forced: most volumes here are too short to hold a kept slice out (self-validation is
# tested in test_stylegan_selfcheck.py)
FAST = {"projection_steps": 4, "device": "cpu", "force_stylegan": True}


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> str:
    """The tiny generator written to a file (engines take generators by path)."""
    return str(save_generator(tiny_generator(), tmp_path_factory.mktemp("g") / "tiny.safetensors"))


def interpolate(volume, generator, *, missing=None, factor=None, cancel=None, **options):
    """The StyleGAN interpolation engine with the fast test settings."""
    params = StyleGANInterpolateParams(generator=generator, **{**FAST, **options})
    return run_interpolate_stylegan(volume, params, missing=missing, factor=factor, cancel=cancel)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
def test_missing_slices_keep_kept_slices_bit_identical_and_dtype(dtype, generator_file):
    volume = textured_volume(shape=(6, 16, 16), dtype=dtype)
    before = volume.copy()
    result = drain(interpolate(volume, generator_file, missing=[2, 3]))
    assert result.data.shape == volume.shape and result.data.dtype == volume.dtype
    kept = [0, 1, 4, 5]
    assert np.array_equal(result.data[kept], volume[kept])
    assert np.array_equal(volume, before)  # input untouched
    window = result.provenance["extra"]["window"]
    synthesized = result.data[[2, 3]]
    assert synthesized.min() >= np.floor(window["low"]) and synthesized.max() <= np.ceil(
        window["high"]
    )
    assert result.provenance["engine"] == "interpolate-stylegan"
    assert result.provenance["extra"]["synthesized_indices"] == [2, 3]
    assert result.provenance["extra"]["neighbour_pairs"] == [[1, 4]]


def test_factor_mode_places_original_slice_i_at_i_times_k(generator_file):
    volume = textured_volume(shape=(3, 16, 16), dtype=np.uint8)
    result = drain(interpolate(volume, generator_file, factor=3))
    assert result.data.shape == (7, 16, 16)
    for i in range(3):
        assert np.array_equal(result.data[i * 3], volume[i])


def test_slices_larger_than_the_generator_are_tiled_and_blended(generator_file):
    volume = textured_volume(shape=(3, 40, 28), dtype=np.uint16)
    result = drain(interpolate(volume, generator_file, missing=[1], tile_overlap=4))
    extra = result.provenance["extra"]
    assert extra["tiles_per_slice"] == 3 * 2  # rows 0,12,24 x cols 0,12 with 16px tiles
    assert result.data.shape == volume.shape
    assert np.array_equal(result.data[[0, 2]], volume[[0, 2]])
    assert result.data[1].std() > 0


def test_slices_smaller_than_the_generator_are_padded_and_cropped_back(generator_file):
    volume = textured_volume(shape=(3, 10, 12), dtype=np.uint8)
    result = drain(interpolate(volume, generator_file, missing=[1]))
    assert result.data.shape == (3, 10, 12)


def test_pixel_blend_one_gives_the_linear_interpolation_of_the_window_mapped_slices(generator_file):
    volume = textured_volume(shape=(3, 16, 16), dtype=np.float32)
    result = drain(
        interpolate(
            volume, generator_file, missing=[1], pixel_blend=1.0, window_percentiles=(0, 100)
        )
    )
    np.testing.assert_allclose(result.data[1], (volume[0] + volume[2]) / 2, atol=1e-5)


def test_residual_correction_and_slerp_and_noise_modes_run(generator_file):
    volume = textured_volume(shape=(3, 16, 16), dtype=np.uint16)
    outputs = []
    for options in (
        {"residual_correction": False},
        {"slerp": True},
        {"noise": "const"},
        {"noise": "none"},
    ):
        result = drain(interpolate(volume, generator_file, missing=[1], **options))
        outputs.append(result.data[1])
    assert not np.array_equal(outputs[0], outputs[2])


def test_interpolation_is_deterministic_for_a_seed(generator_file):
    volume = textured_volume(shape=(3, 16, 16), dtype=np.uint16)
    a = drain(interpolate(volume, generator_file, missing=[1], seed=4))
    b = drain(interpolate(volume, generator_file, missing=[1], seed=4))
    assert np.array_equal(a.data, b.data)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"missing": [0]}, "boundary"),
        ({"missing": [5]}, "boundary"),
        ({"missing": [9]}, "out of range"),
        ({"missing": [1], "factor": 2}, "exactly one"),
        ({"missing": [1], "pixel_blend": 1.5}, "pixel_blend"),
        ({"missing": [1], "noise": "loud"}, "noise"),
    ],
)
def test_invalid_requests_raise_like_the_classical_engine(options, message, generator_file):
    volume = textured_volume(shape=(6, 16, 16))
    with pytest.raises(InvalidInputError, match=message):
        drain(interpolate(volume, generator_file, **options))


def test_interpolation_can_be_cancelled_during_projection(generator_file):
    cancel = CancelToken()
    volume = textured_volume(shape=(3, 16, 16))
    gen = interpolate(volume, generator_file, missing=[1], cancel=cancel)
    next(gen)
    cancel.cancel()
    with pytest.raises(Cancelled):
        drain(gen)


def test_sampled_slices_are_reproducible_per_seed_and_use_the_window(tmp_path, generator_file):
    from napari_scigen.core.stack import Window

    unit = {"generator": generator_file, "device": "cpu", "window": "unit"}
    five = drain(run_sample_slices(StyleGANSampleParams(count=5, seed=10, batch_size=2, **unit)))
    two = drain(run_sample_slices(StyleGANSampleParams(count=2, seed=13, batch_size=8, **unit)))
    assert five.data.shape == (5, 16, 16) and five.data.dtype == np.float32
    np.testing.assert_allclose(five.data[3:], two.data, atol=1e-6)
    window = Window(1000.0, 3000.0, "uint16")
    windowed = save_generator(
        tiny_generator(), tmp_path / "w.safetensors", {"window": window.as_dict()}
    )
    params = StyleGANSampleParams(generator=str(windowed), count=2, seed=13, device="cpu")
    mapped = drain(run_sample_slices(params))
    assert mapped.data.dtype == np.uint16
    assert mapped.data.min() >= 1000 and mapped.data.max() <= 3000
    assert mapped.provenance["seed"] == [13, 14]
    assert mapped.provenance["model"] == str(windowed.resolve())
    assert mapped.provenance["params"]["truncation_psi"] == 0.7
    assert mapped.provenance["extra"]["window"] == window.as_dict()
    # a generator without a recorded window gives [0, 1] floats, as window="unit" does
    np.testing.assert_array_equal(
        drain(run_sample_slices(params.replace(generator=generator_file, window="training"))).data,
        drain(run_sample_slices(params.replace(generator=generator_file, window="unit"))).data,
    )


def test_latent_walk_returns_smooth_frames_between_two_seeds():
    generator = tiny_generator()
    frames = latent_walk(generator, 1, 2, 6)
    assert frames.shape == (6, 16, 16) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))
    assert steps.max() <= np.abs(frames[-1] - frames[0]).mean() + 1e-6
    same = latent_walk(generator, 3, 3, 2)
    np.testing.assert_allclose(same[0], same[1], atol=1e-6)


def test_latent_walk_engine_records_generator_seeds_and_frames(generator_file):
    from napari_scigen.engines.stylegan.checkpoint import load_generator

    params = StyleGANWalkParams(
        generator=generator_file, seed_a=1, seed_b=2, frames=6, device="cpu"
    )
    result = drain(run_latent_walk(params))
    expected = latent_walk(load_generator(generator_file)[0], 1, 2, 6)
    np.testing.assert_array_equal(result.data, expected)
    provenance = result.provenance
    assert provenance["engine"] == "latent-walk-stylegan"
    assert provenance["model"] == str(Path(generator_file).resolve())
    assert provenance["seed"] == [1, 2]
    assert provenance["params"] == {**params.to_dict(), "device": "cpu"}
    with pytest.raises(InvalidInputError, match="frames"):
        StyleGANWalkParams(frames=1)


def test_interpolation_through_the_api_equals_the_engine_and_records_every_parameter(
    generator_file,
):
    from napari_scigen import api

    volume = textured_volume(shape=(3, 16, 16), dtype=np.uint16)
    direct = drain(interpolate(volume, generator_file, missing=[1]))
    routed = api.interpolate(
        volume, method="stylegan", missing=[1], generator=generator_file, **FAST
    )
    np.testing.assert_array_equal(routed.data, direct.data)
    recorded = routed.provenance["params"]
    declared = StyleGANInterpolateParams(generator=generator_file, **FAST).to_dict()
    assert set(declared) <= set(recorded)
    assert recorded["generator"] == generator_file and recorded["projection_steps"] == 4
    assert recorded["tile_overlap"] == 4  # resolved: a quarter of the 16px generator
    assert recorded["missing"] == [1] and recorded["factor"] is None
    assert routed.provenance["model"] == str(Path(generator_file).resolve())
    assert routed.provenance["seed"] == 0 and routed.provenance["method"] == "stylegan"


def test_tile_overlap_must_be_below_the_generator_resolution(generator_file):
    volume = textured_volume(shape=(3, 16, 16))
    with pytest.raises(InvalidInputError, match="tile_overlap"):
        drain(interpolate(volume, generator_file, missing=[1], tile_overlap=16))


def test_lpips_perceptual_choice_projects_with_the_local_lpips_model(monkeypatch, generator_file):
    import napari_scigen.metrics.perceptual as perceptual

    class FakeLpips(torch.nn.Module):
        pnet_type = "alex"

        def forward(self, x, y):
            assert x.shape[1] == 3  # grayscale repeated to RGB, as for real LPIPS
            return (x - y).abs().mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1)

    requested = []

    def fake_load(net, *, device="auto", **_):
        requested.append((net, device))
        return FakeLpips()

    monkeypatch.setattr(perceptual, "load_lpips", fake_load)
    volume = textured_volume(shape=(3, 16, 16))
    result = drain(interpolate(volume, generator_file, missing=[1], perceptual="lpips-alex"))
    assert requested == [("alex", "cpu")]
    assert result.provenance["extra"]["perceptual"] == "lpips (alex)"
    assert result.provenance["params"]["perceptual"] == "lpips-alex"
    default = drain(interpolate(volume, generator_file, missing=[1]))
    assert default.provenance["extra"]["perceptual"].startswith("multiscale-ssim-gradient")


def test_each_kept_slice_is_projected_once_even_when_it_bounds_two_gaps(
    monkeypatch, generator_file
):
    from napari_scigen.engines.stylegan import project

    projected = []
    real = project.run_project

    def spy(generator, slices, **kwargs):
        projected.append(len(slices))
        return real(generator, slices, **kwargs)

    monkeypatch.setattr(project, "run_project", spy)
    volume = textured_volume(shape=(7, 16, 16), dtype=np.uint8)
    events = []
    result = drain(
        interpolate(volume, generator_file, missing=[1, 3, 5], batch_size=2),
        on_progress=events.append,
    )
    assert sum(projected) == 4  # slices 0, 2, 4, 6 (one tile each), not 6
    assert sorted(result.provenance["extra"]["projection_final_loss"]) == ["0", "2", "4", "6"]
    assert events[-1].step == events[-1].total
    assert [e.step for e in events] == sorted(e.step for e in events)
