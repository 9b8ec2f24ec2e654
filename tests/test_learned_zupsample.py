"""Learned z-upsampling: exact-gap geometry, the in-plane check, the decision rule, voxels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen import api
from napari_scigen.engines.learned.geometry import (
    blank_groups,
    gap_if_blanked,
    training_geometry,
)
from napari_scigen.engines.learned.inplane import held_out_slices, row_pattern
from napari_scigen.engines.learned.sampling import InterpolationSampler, slice_profile_blur
from napari_scigen.engines.learned.selfcheck import SelfValidation, decide_z

pytest.importorskip("torch")

from learned_tiny import TINY  # noqa: E402


def _blobs(depth: int, seed: int = 0) -> np.ndarray:
    """Smooth blobs drifting along z with a little noise (uint16), isotropic-ish."""
    z, y, x = np.indices((depth, 32, 32))
    blobs = np.zeros(z.shape)
    for cy, cx, r in ((9, 9, 6), (21, 20, 7)):
        blobs += (y - cy - 0.3 * z) ** 2 + (x - cx) ** 2 <= r**2
    noise = np.random.default_rng(seed).normal(0, 300, z.shape)
    return (20000 + 15000 * np.clip(blobs, 0, 1) + noise).clip(0, 65535).astype(np.uint16)


def test_blanking_runs_of_kept_slices_reproduces_the_gap_of_a_run_of_missing_slices():
    known = np.ones(30, bool)
    known[[14, 15, 16]] = False  # a run of 3 missing slices: gap 4
    groups = blank_groups(known, {4})
    assert groups and all(len(g) == 3 for g in groups)
    assert all(gap_if_blanked(known, g) == 4 for g in groups)
    geometry = training_geometry(known, 3)
    assert geometry.exact and geometry.blank_gaps == {4}
    assert geometry.validation_groups and all(len(g) == 3 for g in geometry.validation_groups)
    held = known.copy()
    for group in geometry.validation_groups:  # each held-out run leaves exactly gap 4
        assert gap_if_blanked(held, group) == 4
        held[list(group)] = False
    # keep-every-4: blanking kept slices only ever gives multiples of 8, never gap 4
    keep = np.zeros(41, bool)
    keep[::4] = True
    assert blank_groups(keep, {4}) == []
    assert not training_geometry(keep, 3).exact
    assert gap_if_blanked(keep, (8, 12)) == 12  # two neighbouring kept slices: gap 4 + 4 + 4
    assert gap_if_blanked(keep, (8, 16)) == 0  # leaves kept slice 12 inside: not a run


def test_a_run_of_missing_slices_is_self_validated_at_exactly_its_own_gap():
    volume = _blobs(24)
    result = api.interpolate(volume, method="learned", missing=(11, 12, 13), **TINY)
    extra = result.provenance["extra"]
    assert extra["z_check_exact"] and extra["decided_by"] in {"z exact", "forced"}
    assert extra["training"] is not None and extra["training_gaps"] == [4]
    assert "gap 4" in extra["self_validation"]["what"]
    kept = [z for z in range(24) if z not in (11, 12, 13)]
    np.testing.assert_array_equal(result.data[kept], volume[kept])


def test_in_plane_check_slices_and_protected_rows_never_become_training_targets():
    # every output row z holds the value z / 100, so a target's value names its slice
    depth = 33
    grid = np.broadcast_to(np.arange(depth, dtype=np.float32)[:, None, None] / 100, (depth, 24, 24))
    grid = np.ascontiguousarray(grid)
    known = np.zeros(depth, bool)
    known[::4] = True
    kept = np.flatnonzero(known)
    protected = held_out_slices(kept, 3)
    assert len(protected) == 2 and set(protected) <= set(kept.tolist())
    from napari_scigen.engines.learned.sampling import in_plane_sources

    training_rows = np.setdiff1d(kept, protected)
    sources = in_plane_sources(grid, training_rows, 1.0, 1.0)
    sampler = InterpolationSampler(
        grid, known, {8}, sources, 0.5, (16, 16), ("xz", "yz"), np.random.default_rng(0),
        protected=protected,
    )  # fmt: skip
    batch = sampler.sample(300)
    targets = np.round(batch.target[batch.weight > 0] * 100).astype(int)
    assert targets.size > 0
    assert not set(np.unique(targets).tolist()) & set(protected)
    # the in-plane crops drop rows with the job's own pattern (known every 4th row)
    pattern = row_pattern(known, 24)
    assert set(np.diff(np.flatnonzero(pattern)).tolist()) == {4}


def test_keep_every_is_checked_in_plane_at_the_exact_gap_and_the_same_seed_gives_the_same_bytes():
    volume = _blobs(25)
    missing = tuple(z for z in range(25) if z % 3)  # keep every 3rd: 0, 3, ..., 24
    first = api.interpolate(volume, method="learned", missing=missing, **TINY)
    extra = first.provenance["extra"]
    assert not extra["z_check_exact"]
    assert extra["decided_by"] in {"in-plane exact + z proxy", "in-plane exact"}
    in_plane = extra["in_plane_check"]
    assert set(in_plane["scores"]) == {"learned", "linear"} and "gap 3" in in_plane["what"]
    assert extra["filled_with"] in {"learned", "linear"}
    kept = [z for z in range(25) if z not in missing]
    np.testing.assert_array_equal(first.data[kept], volume[kept])
    again = api.interpolate(volume, method="learned", missing=missing, **TINY)
    np.testing.assert_array_equal(first.data, again.data)
    other = api.interpolate(
        volume, method="learned", missing=missing, force_learned=True, **{**TINY, "seed": 1}
    )
    assert other.provenance["extra"]["filled_with"] == "learned"


def test_independent_slices_along_z_are_not_filled_by_the_network_at_keep_every():
    # each slice is its own smooth random image: in-plane rows are easy to interpolate,
    # but nothing carries from one slice to the next; the z-proxy vetoes the network
    from scipy import ndimage

    rng = np.random.default_rng(3)
    slices = ndimage.gaussian_filter(rng.normal(0, 1, (25, 32, 32)), sigma=(0, 2.5, 2.5))
    volume = (1000 + 300 * slices / slices.std()).astype(np.float32)
    missing = tuple(z for z in range(25) if z % 3)
    result = api.interpolate(
        volume, method="learned", missing=missing, **{**TINY, "train_steps": 40}
    )
    extra = result.provenance["extra"]
    assert extra["filled_with"] == "linear", extra["choice_reason"]
    assert extra["learned_lost_self_validation"]
    linear = api.interpolate(volume, method="linear", missing=missing)
    np.testing.assert_array_equal(result.data, linear.data)


def test_a_sparse_stack_with_coarse_z_voxels_gives_the_dense_grid_result():
    gap = 3
    dense = _blobs(22)  # 22 = 7 * 3 + 1: kept 0, 3, ..., 21
    sparse = dense[::gap].copy()
    missing = tuple(z for z in range(dense.shape[0]) if z % gap)
    from_dense = api.interpolate(dense, method="learned", missing=missing, **TINY)
    from_sparse = api.interpolate(
        sparse, method="learned", factor=gap, voxel_size=(float(gap), 1.0, 1.0), **TINY
    )
    assert from_sparse.data.shape == dense.shape
    np.testing.assert_array_equal(from_sparse.data, from_dense.data)
    assert (
        from_sparse.provenance["extra"]["filled_with"]
        == from_dense.provenance["extra"]["filled_with"]
    )


def test_the_slice_profile_blurs_in_plane_rows_to_the_given_thickness():
    image = np.zeros((41, 5), np.float32)
    image[20] = 1.0
    blurred = slice_profile_blur(image, 4.0)
    column = blurred[:, 0] / blurred[:, 0].max()
    above_half = np.flatnonzero(column >= 0.5)
    assert 3 <= above_half.size <= 5  # full width at half maximum = 4 rows
    np.testing.assert_array_equal(slice_profile_blur(image, None), image)
    volume = _blobs(13)
    missing = tuple(z for z in range(13) if z % 3)
    result = api.interpolate(volume, method="learned", missing=missing, slice_thickness=2.0, **TINY)
    extra = result.provenance["extra"]
    assert extra["slice_thickness"] == 2.0 and any(
        "slice thickness" in n for n in extra["assumptions"]
    )


def _validation(learned: float, linear: float) -> SelfValidation:
    return SelfValidation(
        scores={"learned": {"psnr": learned, "ssim": 0.5}, "linear": {"psnr": linear, "ssim": 0.5}},
        what="rows",
        count=2,
    )


@pytest.mark.parametrize(
    ("z", "z_exact", "in_plane", "chosen", "by"),
    [
        ((30.0, 29.0), True, (20.0, 25.0), "learned", "z exact"),  # exact z decides alone
        ((28.0, 29.0), True, (30.0, 20.0), "linear", "z exact"),
        ((25.0, 24.0), False, (31.0, 30.0), "learned", "in-plane exact + z proxy"),
        ((23.0, 24.0), False, (31.0, 30.0), "linear", "in-plane exact + z proxy"),  # veto
        (None, False, (30.05, 30.0), "linear", "in-plane exact"),  # inside the margin
        (None, False, (31.0, 30.0), "learned", "in-plane exact"),
        ((25.0, 24.0), False, None, "linear", "not verifiable"),  # only a proxy: unverifiable
        (None, False, None, "linear", "not verifiable"),
    ],
)
def test_the_decision_rule_uses_the_exact_checks_and_lets_the_z_proxy_veto(
    z, z_exact, in_plane, chosen, by
):
    decision = decide_z(
        _validation(*z) if z else None, z_exact, _validation(*in_plane) if in_plane else None
    )
    assert (decision.chosen, decision.decided_by) == (chosen, by)
    assert "--" not in decision.reason and "force_learned" not in decision.reason
    forced = decide_z(
        _validation(*z) if z else None,
        z_exact,
        _validation(*in_plane) if in_plane else None,
        force=True,
    )
    assert forced.chosen == "learned"


def test_a_fractional_factor_puts_every_output_slice_at_j_over_f_and_keeps_the_landing_slices():
    from napari_scigen.engines.interpolation.plan import plan_slices

    plan = plan_slices(5, factor=2.5)
    assert plan.n_out == 11 and plan.factor == 2.5
    assert plan.kept == ((0, 0), (2, 5), (4, 10))  # sources 1 and 3 land between rows
    positions = {j: gap.below + t for gap in plan.gaps for j, t in gap.targets}
    assert all(abs(positions[j] - j / 2.5) < 1e-12 for j in positions)
    volume = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32)
    linear = api.interpolate(volume, method="linear", factor=2.5)
    np.testing.assert_allclose(linear.data[:, 0, 0], np.arange(11) / 2.5, atol=1e-6)
    assert linear.voxel_scale == (0.4, 1.0, 1.0)
    with pytest.raises(Exception, match="simple fraction"):
        api.interpolate(volume, method="linear", factor=2.37)


def test_learned_upsampling_by_a_fraction_is_the_whole_factor_grid_thinned():
    volume = _blobs(9)
    half = api.interpolate(volume, method="learned", factor=2.5, force_learned=True, **TINY)
    whole = api.interpolate(volume, method="learned", factor=5, force_learned=True, **TINY)
    assert half.data.shape == (21, 32, 32)
    np.testing.assert_array_equal(half.data, whole.data[::2])
    np.testing.assert_array_equal(half.data[[0, 5, 10, 15, 20]], volume[[0, 2, 4, 6, 8]])
    extra = half.provenance["extra"]
    assert "5/2" in extra["internal_grid"] and extra["synthesized_indices"][:2] == [1, 2]
