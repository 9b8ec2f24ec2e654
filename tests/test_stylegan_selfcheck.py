"""StyleGAN interpolation's default: linear base + generator detail, seamless, self-validated."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_scigen.core.progress import drain  # noqa: E402
from napari_scigen.core.tiling import tiles_covering  # noqa: E402
from napari_scigen.engines.interpolation.classical import LinearParams, run_linear  # noqa: E402
from napari_scigen.engines.stylegan.checkpoint import save_generator  # noqa: E402
from napari_scigen.engines.stylegan.interpolate import run_interpolate_stylegan  # noqa: E402
from napari_scigen.engines.stylegan.params import StyleGANInterpolateParams  # noqa: E402
from napari_scigen.engines.stylegan.selfcheck import plan_checks  # noqa: E402
from napari_scigen.engines.stylegan.tiles import TileBlender, smooth_weights  # noqa: E402
from stylegan_tiny import textured_volume, tiny_generator  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> str:
    return str(save_generator(tiny_generator(), tmp_path_factory.mktemp("g") / "tiny.safetensors"))


def run(volume, generator, *, missing=None, factor=None, **options):
    values = {"generator": generator, "projection_steps": 3, "device": "cpu", **options}
    params = StyleGANInterpolateParams(**values)
    return drain(run_interpolate_stylegan(volume, params, missing=missing, factor=factor))


def linear(volume, **kwargs):
    return drain(run_linear(volume, LinearParams(), **kwargs)).data


def test_default_keeps_kept_slices_bit_identical_whichever_method_fills(generator_file):
    volume = textured_volume(shape=(9, 20, 20), dtype=np.uint16)
    for options in ({}, {"force_stylegan": True}):
        result = run(volume, generator_file, missing=[1, 5], **options)
        kept = [i for i in range(9) if i not in (1, 5)]
        assert np.array_equal(result.data[kept], volume[kept])
    upsampled = run(volume[:3], generator_file, factor=2, force_stylegan=True)
    assert np.array_equal(upsampled.data[::2], volume[:3])


def test_forced_detail_vanishes_at_the_kept_slices_so_results_meet_them(generator_file):
    volume = textured_volume(shape=(3, 16, 16), dtype=np.float32)
    result = run(volume, generator_file, factor=4, force_stylegan=True, validation_slices=0)
    base = linear(volume, factor=4)
    detail = np.abs(result.data.astype(np.float64) - base)
    # per gap: no detail on the kept slices, more detail towards the middle of the gap
    assert detail[[0, 4, 8]].max() == 0
    assert detail[2].mean() > detail[1].mean() > 0 and detail[2].mean() > detail[3].mean() > 0


def _border_and_inside_steps(image, borders, axis):
    """Largest step between neighbouring pixels across tile borders, and elsewhere."""
    steps = np.abs(np.diff(image, axis=axis))  # index b - 1: between pixels b - 1 and b
    at = [b - 1 for b in borders]
    return np.take(steps, at, axis=axis).max(), np.delete(steps, at, axis=axis).max()


def _borders(shape, tile, overlap):
    tiles = tiles_covering(shape, tile, overlap)
    rows = sorted({b for t in tiles for b in (t.y0, t.y1)} - {0, shape[0]})
    cols = sorted({b for t in tiles for b in (t.x0, t.x1)} - {0, shape[1]})
    return tiles, rows, cols


def test_tiles_are_blended_without_seams(generator_file):
    volume = textured_volume(shape=(3, 40, 40), dtype=np.float32)
    overlap = 8
    result = run(
        volume,
        generator_file,
        missing=[1],
        force_stylegan=True,
        validation_slices=0,
        tile_overlap=overlap,
    )
    detail = result.data[1].astype(np.float64) - linear(volume, missing=[1])[1]
    assert np.abs(detail).max() > 0
    _, rows, cols = _borders((40, 40), 16, overlap)
    for axis, borders in ((0, rows), (1, cols)):
        across, inside = _border_and_inside_steps(detail, borders, axis)
        assert across <= inside


def test_smooth_window_leaves_no_step_where_disagreeing_tiles_meet():
    shape, overlap = (40, 52), 6
    tiles, rows, cols = _borders(shape, 16, overlap)
    tile_values = np.random.default_rng(0).random(len(tiles))
    values = tile_values[:, None, None] * np.ones((1, 16, 16))  # every tile says another thing
    smooth = TileBlender(tiles, shape, overlap).blend(values)
    hard = TileBlender(tiles, shape, 0).blend(values)  # uniform weights: a step at each edge
    for axis, borders in ((0, rows), (1, cols)):
        across, inside = _border_and_inside_steps(smooth, borders, axis)
        assert across <= inside
        across_hard, inside_hard = _border_and_inside_steps(hard, borders, axis)
        assert across_hard > inside_hard


def test_smooth_window_puts_a_constant_image_back_unchanged():
    tiles = tiles_covering((30, 37), 16, 5)
    blended = TileBlender(tiles, (30, 37), 5).blend(np.full((len(tiles), 16, 16), 2.5))
    np.testing.assert_allclose(blended, 2.5)
    weights = smooth_weights((16, 16), 5)
    assert weights.min() > 0 and weights.max() == 1.0


def test_same_seed_gives_the_same_bytes_and_another_seed_another_detail(generator_file):
    volume = textured_volume(shape=(5, 16, 16), dtype=np.uint16)
    options = {"missing": [2], "force_stylegan": True, "validation_slices": 0}
    a = run(volume, generator_file, seed=4, **options)
    b = run(volume, generator_file, seed=4, **options)
    c = run(volume, generator_file, seed=5, **options)
    assert a.data.tobytes() == b.data.tobytes()
    assert not np.array_equal(a.data, c.data)


def test_falls_back_to_linear_on_independent_noise_and_says_so(generator_file):
    noise = np.random.default_rng(3).integers(0, 65535, (9, 24, 24)).astype(np.uint16)
    result = run(noise, generator_file, missing=[1, 5])
    extra = result.provenance["extra"]
    assert extra["filled_with"] == "linear"
    assert extra["learned_lost_self_validation"] is True
    assert extra["decided_by"] == "z exact"
    assert extra["choice_reason"].startswith("STYLEGAN LOST SELF-VALIDATION")
    assert np.array_equal(result.data, linear(noise, missing=[1, 5]))
    scores = extra["self_validation"]["scores"]
    assert set(scores) == {"stylegan", "linear"} and extra["self_validation"]["count"] == 2
    assert extra["expected_error"] == scores["linear"]
    # held out: 3 (from 2 and 4) and 7 (from 6 and 8); slice 0, needed only to fill, is
    # never projected once linear has won
    assert sorted(extra["projection_final_loss"]) == ["2", "4", "6", "8"]


def test_forcing_keeps_stylegan_and_records_that_it_lost(generator_file):
    noise = np.random.default_rng(3).integers(0, 65535, (9, 24, 24)).astype(np.uint16)
    result = run(noise, generator_file, missing=[1, 5], force_stylegan=True)
    extra = result.provenance["extra"]
    assert extra["filled_with"] == "stylegan" and extra["decided_by"] == "forced"
    assert extra["learned_lost_self_validation"] is True and extra["detail_strength"] == 1.0


def test_without_any_kept_slice_to_hold_out_linear_fills_as_not_verifiable(generator_file):
    volume = textured_volume(shape=(3, 16, 16), dtype=np.uint8)
    extra = run(volume, generator_file, missing=[1]).provenance["extra"]
    assert extra["filled_with"] == "linear" and extra["decided_by"] == "not verifiable"
    assert extra["learned_not_verifiable"] is True


def test_checks_use_the_jobs_own_gap_when_kept_slices_allow_it_else_a_longer_one():
    from napari_scigen.engines.interpolation.plan import plan_slices

    drop = plan_checks(plan_slices(17, missing=[1, 5, 9, 13]), 2, prefer={0, 2, 4, 6, 8})
    assert drop.exact and drop.check_gaps == {2} and len(drop.checks) == 2
    assert all(c.above - c.below == 2 and c.rows[0][1] == 0.5 for c in drop.checks)
    keep = plan_checks(plan_slices(5, factor=4), 2)
    assert not keep.exact and keep.check_gaps == {8}
    assert [(c.below, c.above, c.rows) for c in keep.checks] == [
        (0, 2, ((1, 0.5),)),
        (2, 4, ((3, 0.5),)),
    ]


def test_the_dock_outcome_says_linear_filled_and_why(generator_file):
    from napari_scigen._qt._outcome import fill_outcome

    noise = np.random.default_rng(3).integers(0, 65535, (9, 24, 24)).astype(np.uint16)
    result = run(noise, generator_file, missing=[1, 5])
    outcome = fill_outcome("stylegan", result.provenance, "interpolate")
    assert outcome.filled == "linear" and outcome.warning
    assert outcome.label == "linear (stylegan fallback)"
    assert "stylegan was not used" in outcome.message
    assert "held-out kept slices" in outcome.message and "linear 8." in outcome.message


def _passing_validation():
    from napari_scigen.engines.learned.selfcheck import SelfValidation

    scores = {
        "linear": {"psnr": 30.0, "ssim": 0.90, "gmsd": 0.100},
        "stylegan": {"psnr": 29.8, "ssim": 0.895, "gmsd": 0.080},  # within 1 dB, sharper
    }
    return SelfValidation(scores=scores, what="kept slices rebuilt", count=2)


@pytest.mark.parametrize(
    ("exact", "force", "fills", "decided_by"),
    [
        (True, False, "stylegan", "z exact"),
        (False, False, "linear", "not verifiable"),  # a proxy pass never decides alone
        (False, True, "stylegan", "forced"),
    ],
)
def test_a_pass_fills_with_stylegan_only_at_the_jobs_own_gap_or_when_forced(
    exact, force, fills, decided_by
):
    from napari_scigen.engines.stylegan.selfcheck import decide

    verdict = decide(_passing_validation(), {"stylegan": 1.0}, exact=exact, force=force, full=1.0)
    assert verdict.decision.chosen == fills and verdict.decision.decided_by == decided_by
    assert verdict.strength == (1.0 if fills == "stylegan" else 0.0)
    assert not verdict.decision.lost
    if fills == "linear":
        assert verdict.decision.reason.startswith("NOT VERIFIABLE")
