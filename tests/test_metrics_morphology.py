"""Morphology metrics against analytic cases: checkerboards, random disks and spheres."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen.core.validation import InvalidInputError
from napari_scigen.metrics.morphology import (
    compare_morphology,
    local_thickness,
    otsu_threshold,
    phase_fractions,
    porosity,
    segment,
    size_distribution,
    specific_surface_area,
    two_point_correlation,
)


def _checkerboard(n: int, square: int) -> np.ndarray:
    y, x = np.indices((n, n))
    return ((y // square + x // square) % 2).astype(bool)


def _random_disks(n: int, radius: float, count: int, seed: int) -> np.ndarray:
    """Non-overlapping disks (centres at least 2R + 2 apart), fully inside the image."""
    rng = np.random.default_rng(seed)
    centres: list[np.ndarray] = []
    while len(centres) < count:
        candidate = rng.uniform(radius + 1, n - radius - 1, 2)
        if all(np.hypot(*(candidate - c)) > 2 * radius + 2 for c in centres):
            centres.append(candidate)
    y, x = np.indices((n, n))
    image = np.zeros((n, n), dtype=bool)
    for cy, cx in centres:
        image |= (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
    return image


def _random_spheres(n: int, radius: float, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres: list[np.ndarray] = []
    while len(centres) < count:
        candidate = rng.uniform(radius + 1, n - radius - 1, 3)
        if all(np.linalg.norm(candidate - c) > 2 * radius + 2 for c in centres):
            centres.append(candidate)
    z, y, x = np.indices((n, n, n))
    image = np.zeros((n, n, n), dtype=bool)
    for cz, cy, cx in centres:
        image |= (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
    return image


def test_s2_of_periodic_checkerboard_is_the_exact_triangle_wave():
    square = 8
    r, s2 = two_point_correlation(_checkerboard(64, square), 16, periodic=True)
    # along an axis the phase indicator is a square wave of period 2a
    expected = np.where(r <= square, 0.5 - r / (2 * square), (r - square) / (2 * square))
    np.testing.assert_allclose(s2, expected, atol=1e-12)


def test_non_periodic_s2_starts_at_the_phase_fraction_and_tracks_the_checkerboard():
    square = 8
    r, s2 = two_point_correlation(_checkerboard(64, square), 16)
    expected = np.where(r <= square, 0.5 - r / (2 * square), (r - square) / (2 * square))
    assert s2[0] == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_allclose(s2, expected, atol=0.03)  # finite-window estimate


def test_s2_of_an_uncorrelated_random_medium_drops_from_phi_to_phi_squared():
    image = np.random.default_rng(0).random((256, 256)) < 0.3
    phi = image.mean()
    r, s2 = two_point_correlation(image, 20, voxel_size=2.5)
    assert s2[0] == pytest.approx(phi, abs=1e-12)
    np.testing.assert_allclose(s2[1:], phi**2, atol=0.004)
    assert r[-1] == pytest.approx(20 * 2.5)


def _boolean_disks(n: int, radius: float, density: float, seed: int) -> np.ndarray:
    """Poisson (overlapping) disks; centres also outside the image so edges are unbiased."""
    rng = np.random.default_rng(seed)
    count = rng.poisson(density * (n + 2 * radius) ** 2)
    covered = np.zeros((n, n), dtype=bool)
    for cy, cx in rng.uniform(-radius, n + radius, (count, 2)):
        y0, y1 = max(0, int(cy - radius)), min(n, int(cy + radius) + 2)
        x0, x1 = max(0, int(cx - radius)), min(n, int(cx + radius) + 2)
        if y0 < y1 and x0 < x1:
            yy, xx = np.ogrid[y0:y1, x0:x1]
            covered[y0:y1, x0:x1] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return covered


def test_s2_of_the_space_between_poisson_disks_matches_the_analytic_curve():
    # Boolean model: the void phase has S2(r) = phi^2 exp(density * lens(r)), where
    # lens(r) is the overlap area of two disks r apart (0 beyond 2R): phi at r = 0,
    # phi^2 from r = 2R on (Torquato, Random Heterogeneous Materials, 2002).
    radius, density = 6.0, 0.6 / (np.pi * 36.0)
    void = ~_boolean_disks(256, radius, density, seed=0)
    phi = void.mean()
    r, s2 = two_point_correlation(void, 30)
    ratio = np.minimum(r / (2 * radius), 1.0)
    lens = 2 * radius**2 * np.arccos(ratio) - (r / 2) * np.sqrt(
        np.clip(4 * radius**2 - r**2, 0, None)
    )
    expected = phi**2 * np.exp(density * lens)
    assert s2[0] == pytest.approx(phi, abs=1e-12)
    np.testing.assert_allclose(s2, expected, atol=0.03)
    assert abs(s2[15:].mean() - phi**2) < 0.03 < phi - phi**2


def test_porosity_of_random_spheres_matches_their_volume_fraction():
    radius, count, n = 5.0, 30, 64
    grains = _random_spheres(n, radius, count, seed=1)
    labels = grains.astype(np.uint8)  # 1 = solid grains, 0 = pore
    analytic = 1.0 - count * 4 / 3 * np.pi * radius**3 / n**3
    assert porosity(labels) == pytest.approx(analytic, rel=0.01)
    assert porosity(labels) == pytest.approx(1 - grains.mean(), abs=1e-12)
    fractions = phase_fractions(labels)
    assert sum(fractions.values()) == pytest.approx(1.0)
    assert fractions[0] == pytest.approx(porosity(labels))


def test_segment_otsu_labels_dark_pores_zero_and_bright_solid_one():
    rng = np.random.default_rng(2)
    truth = _random_disks(96, radius=5, count=20, seed=3)  # pores
    image = np.where(truth, 8000, 30000) + rng.normal(0, 800, truth.shape)
    image = image.clip(0, 65535).astype(np.uint16)
    labels = segment(image)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels == 0, truth)
    assert 8000 < otsu_threshold(image) < 30000


def test_segment_given_and_threshold_methods():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    np.testing.assert_array_equal(segment(image, method="threshold", threshold=7.5), image > 7.5)
    given = np.eye(4, dtype=bool)
    np.testing.assert_array_equal(
        segment(image, method="given", labels=given), given.astype(np.uint8)
    )
    with pytest.raises(InvalidInputError, match="needs labels"):
        segment(image, method="given")
    with pytest.raises(InvalidInputError, match="needs a threshold"):
        segment(image, method="threshold")


def test_perimeter_of_a_disk_by_mesh_and_by_s2_slope():
    radius = 20
    y, x = np.indices((101, 101))
    disk = (y - 50) ** 2 + (x - 50) ** 2 <= radius**2
    perimeter = 2 * np.pi * radius
    assert specific_surface_area(disk) * disk.size == pytest.approx(perimeter, rel=0.08)
    assert specific_surface_area(disk, smoothing=0.7) * disk.size == pytest.approx(
        perimeter, rel=0.03
    )
    assert specific_surface_area(disk, method="s2") * disk.size == pytest.approx(
        perimeter, rel=0.05
    )


def test_surface_of_a_sphere_scales_with_voxel_size():
    radius = 12
    z, y, x = np.indices((40, 40, 40))
    sphere = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= radius**2
    area = 4 * np.pi * radius**2
    assert specific_surface_area(sphere) * sphere.size == pytest.approx(area, rel=0.10)
    assert specific_surface_area(sphere, smoothing=0.7) * sphere.size == pytest.approx(
        area, rel=0.03
    )
    assert specific_surface_area(sphere, method="s2") * sphere.size == pytest.approx(area, rel=0.05)
    # s_v has units 1/length: doubling the voxel size halves it
    assert specific_surface_area(sphere, 2.0) == pytest.approx(specific_surface_area(sphere) / 2)


def test_surface_is_zero_without_interface():
    assert specific_surface_area(np.ones((8, 8, 8), bool)) == 0.0
    assert specific_surface_area(np.zeros((8, 8), bool)) == 0.0


def test_size_distribution_of_equal_disks_gives_their_diameter():
    radius = 6
    image = _random_disks(160, radius=radius, count=40, seed=4)
    sizes = size_distribution(image, voxel_size=0.5)
    assert sizes["count"] == 40
    assert sizes["d50"] == pytest.approx(2 * radius * 0.5, rel=0.03)
    assert sizes["mean_diameter"] == pytest.approx(2 * radius * 0.5, rel=0.03)
    assert sizes["weights"].sum() == pytest.approx(1.0)


def test_size_distribution_can_drop_objects_touching_the_border():
    image = np.zeros((40, 40), bool)
    image[10:14, 10:14] = True
    image[0:6, 20:26] = True  # touches the border
    assert size_distribution(image)["count"] == 2
    kept = size_distribution(image, exclude_border=True)
    assert kept["count"] == 1
    assert kept["d50"] == pytest.approx(np.sqrt(4 * 16 / np.pi))


def test_local_thickness_of_a_slab_is_its_width():
    slab = np.zeros((40, 40), bool)
    slab[10:17] = True  # 7 voxels thick
    thickness = local_thickness(slab)
    assert np.all(thickness[slab] == 7)
    assert np.all(thickness[~slab] == 0)
    assert size_distribution(slab, method="thickness")["d50"] == 7


def test_local_thickness_of_a_disk_peaks_at_its_diameter():
    radius = 9
    y, x = np.indices((41, 41))
    disk = (y - 20) ** 2 + (x - 20) ** 2 <= radius**2
    thickness = local_thickness(disk)
    assert thickness.max() == 2 * radius + 1
    assert thickness[20, 20] == 2 * radius + 1


def test_compare_identical_images_gives_zero_errors():
    rng = np.random.default_rng(5)
    pores = _random_disks(80, radius=4, count=25, seed=6)
    image = (np.where(pores, 9000, 26000) + rng.normal(0, 500, pores.shape)).astype(np.uint16)
    result = compare_morphology(image, image.copy())
    for values in result["metrics"].values():
        assert values["relative_error"] == pytest.approx(0.0, abs=1e-12)
    assert result["s2"]["rmse"] == 0.0
    assert result["metrics"]["porosity"]["reference"] == pytest.approx(pores.mean(), abs=0.01)


def test_compare_uses_one_threshold_so_a_contrast_shift_shows_up():
    rng = np.random.default_rng(7)
    pores = _random_disks(80, radius=4, count=25, seed=8)
    image = (np.where(pores, 9000, 26000) + rng.normal(0, 2500, pores.shape)).clip(0, 65535)
    reference = image.astype(np.uint16)
    brighter = (image + 6000).clip(0, 65535).astype(np.uint16)  # pores drift above threshold
    result = compare_morphology(reference, brighter)
    assert result["metrics"]["porosity"]["relative_error"] < -0.05
    assert result["segmentation"]["threshold"] == pytest.approx(otsu_threshold(reference))


def test_two_point_correlation_rejects_a_lag_longer_than_the_image():
    with pytest.raises(InvalidInputError, match="r_max"):
        two_point_correlation(np.ones((8, 8), bool), 8)


@pytest.mark.shared_data
def test_berea_sandstone_porosity_and_s2_limits(shared_data):
    from napari_scigen.core.io import read_volume

    path = shared_data / "berea_sandstone_binary_pmgan" / "volume.tif"
    if not path.is_file():
        pytest.skip("Berea volume not present")
    volume = np.asarray(read_volume(path).data)[:100]
    labels = segment(volume, method="threshold", threshold=127)  # 0 = pore, 255 = grain
    phi = porosity(labels)
    assert phi == pytest.approx(float(np.mean(volume == 0)))
    assert 0.15 < phi < 0.25  # SOURCE.md: porosity about 19.7 % for the full crop
    _, s2 = two_point_correlation(labels == 0, 40)
    assert s2[0] == pytest.approx(phi)
    assert s2[-1] == pytest.approx(phi**2, rel=0.15)
