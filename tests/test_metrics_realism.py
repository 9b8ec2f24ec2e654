"""Set-level realism of generated slices: porosity, surface, S2 and pore sizes, weight-free."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen.core.progress import drain
from napari_scigen.metrics.realism import pore_size_distance, realism, s2_distance


def disks(radius: int, count: int = 3, size: int = 64, seed: int = 0) -> np.ndarray:
    """``count`` slices of bright solid with dark disks of one radius on a grid."""
    yy, xx = np.mgrid[:size, :size]
    stack = np.full((count, size, size), 200, np.uint8)
    rng = np.random.default_rng(seed)
    for slice_ in stack:
        for cy in range(16, size, 32):
            for cx in range(16, size, 32):
                dy, dx = rng.integers(-2, 3, 2)
                slice_[(yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= radius**2] = 20
    return stack


def test_the_same_material_scores_zero_everywhere():
    real = disks(6)
    scores = realism(real, real.copy(), threshold=100)
    assert scores["porosity"]["relative_error"] == 0
    assert scores["specific_surface"]["relative_error"] == 0
    assert scores["s2"]["distance"] == 0
    assert scores["pore_size"]["distance"] == 0
    assert scores["counts"] == {"real": 3, "generated": 3}


def test_pore_size_distance_is_the_shift_of_the_diameters():
    small, large = disks(4), disks(8, seed=1)
    sizes = pore_size_distance(small <= 100, large <= 100)
    expected = sizes["generated_d50"] - sizes["real_d50"]
    assert 7 < expected < 9  # equivalent diameters of radius-4 and radius-8 digital disks
    assert sizes["distance"] == pytest.approx(expected, rel=0.1)


def test_larger_pores_raise_porosity_surface_and_s2_errors_in_the_right_direction():
    scores = realism(disks(4), disks(8, seed=1), threshold=100)
    assert scores["porosity"]["relative_error"] > 1  # four times the area
    assert scores["specific_surface"]["relative_error"] > 0
    assert s2_distance(disks(4) <= 100, disks(8, seed=1) <= 100, 16) == scores["s2"]["distance"]
    assert scores["s2"]["distance"] > 0


def test_sets_of_different_sizes_and_slice_shapes_are_compared():
    real, generated = disks(6, count=4, size=96), disks(6, count=2, size=64)
    scores = realism(real, generated, threshold=100)
    assert scores["counts"] == {"real": 4, "generated": 2}
    assert scores["s2"]["r_max"] == 16
    assert np.isfinite(scores["pore_size"]["distance"])


def test_a_set_without_pores_has_no_pore_size_distance():
    solid = np.full((2, 32, 32), 200, np.uint8)
    assert np.isnan(pore_size_distance(disks(4, size=32) <= 100, solid <= 100)["distance"])


def test_validate_reports_s2_and_pore_size_distances_per_method():
    from napari_scigen.core.phantoms import make_rock_volume
    from napari_scigen.workflows.validate import run_validation

    volume = make_rock_volume((9, 64, 64), seed=2).volume
    result = drain(run_validation(volume, methods="linear,nearest", metrics="psnr,s2,psd"))
    rows = {(r["method"], r["metric"]): r for r in result.provenance["table"]}
    for method in ("linear", "nearest"):
        assert rows[(method, "s2")]["value"] >= 0
        assert rows[(method, "psd")]["value"] >= 0
        assert rows[(method, "psd")]["details"]["real_d50"] > 0
