"""Mask helpers: morphology, feathering, thresholds, slice copies, ring detection."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_scigen.core.masks import (
    copy_slice_mask,
    detect_ring_artifacts,
    feather_mask,
    grow_mask,
    labels_to_bool,
    mask_from_threshold,
    shrink_mask,
)
from napari_scigen.core.validation import InvalidInputError


def _square_mask(shape=(40, 40), lo=12, hi=28):
    mask = np.zeros(shape, dtype=bool)
    mask[lo:hi, lo:hi] = True
    return mask


def test_grow_mask_dilates_by_a_disk_and_leaves_input_alone():
    mask = np.zeros((21, 21), dtype=bool)
    mask[10, 10] = True
    before = mask.copy()
    grown = grow_mask(mask, 3)
    assert np.array_equal(mask, before)
    yy, xx = np.indices(mask.shape)
    assert np.array_equal(grown, (yy - 10) ** 2 + (xx - 10) ** 2 <= 9)


def test_grow_then_shrink_restores_a_convex_mask():
    mask = _square_mask()
    assert np.array_equal(shrink_mask(grow_mask(mask, 3), 3), mask)
    assert np.array_equal(grow_mask(shrink_mask(mask, 3), 3)[14:26, 14:26], mask[14:26, 14:26])
    assert shrink_mask(mask, 3).sum() == (16 - 6) ** 2


def test_shrink_mask_does_not_erode_from_the_image_border():
    mask = np.zeros((30, 30), dtype=bool)
    mask[:, :10] = True
    shrunk = shrink_mask(mask, 2)
    assert shrunk[:, :8].all() and not shrunk[:, 8:].any()


def test_grow_and_shrink_work_per_slice_not_across_z():
    volume = np.zeros((3, 21, 21), dtype=bool)
    volume[1, 10, 10] = True
    grown = grow_mask(volume, 2)
    assert not grown[0].any() and not grown[2].any()
    assert grown[1].sum() == 13  # disk of radius 2


def test_label_masks_keep_dtype_and_label_values():
    labels = np.zeros((30, 30), dtype=np.uint16)
    labels[5:10, 5:10] = 4
    labels[20:25, 20:25] = 9
    grown = grow_mask(labels, 2)
    assert grown.dtype == np.uint16
    assert set(np.unique(grown)) == {0, 4, 9}
    assert (grown == 4).sum() > 25 and grown[11, 7] == 4
    shrunk = shrink_mask(labels, 1)
    assert shrunk.dtype == np.uint16
    assert (shrunk == 4).sum() == 9 and (shrunk == 9).sum() == 9


def test_shrink_mask_separates_touching_labels():
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[5:15, 2:10] = 1
    labels[5:15, 10:18] = 2
    shrunk = shrink_mask(labels, 1)
    assert not shrunk[:, 9].any() and not shrunk[:, 10].any()


def test_feather_mask_is_zero_outside_and_rises_inward():
    mask = _square_mask()
    weights = feather_mask(mask, sigma=2.0)
    assert weights.dtype == np.float32
    assert np.all(weights[~mask] == 0.0)
    assert 0.0 < weights[12, 20] < weights[14, 20] < weights[20, 20] <= 1.0
    assert weights[20, 20] > 0.99
    assert weights.min() >= 0.0 and weights.max() <= 1.0


def test_feather_mask_sigma_zero_is_the_hard_mask():
    mask = _square_mask()
    np.testing.assert_array_equal(feather_mask(mask, 0), mask.astype(np.float32))


def test_feather_mask_full_slice_is_all_ones_and_empty_slice_all_zeros():
    volume = np.zeros((2, 8, 8), dtype=np.uint8)
    volume[0] = 1
    weights = feather_mask(volume, 1.5)
    assert np.all(weights[0] == 1.0) and np.all(weights[1] == 0.0)


def test_mask_from_threshold_is_inclusive_and_needs_a_bound():
    image = np.arange(10, dtype=np.uint16).reshape(2, 5)
    np.testing.assert_array_equal(
        mask_from_threshold(image, low=3, high=6), (image >= 3) & (image <= 6)
    )
    np.testing.assert_array_equal(mask_from_threshold(image, high=2), image <= 2)
    with pytest.raises(InvalidInputError, match="at least one"):
        mask_from_threshold(image)
    with pytest.raises(InvalidInputError, match="must not exceed"):
        mask_from_threshold(image, low=5, high=1)


def test_copy_slice_mask_copies_onto_an_inclusive_range():
    labels = np.zeros((6, 8, 8), dtype=np.uint8)
    labels[2, 3:5, 3:5] = 7
    labels[5, 0, 0] = 1
    before = labels.copy()
    copied = copy_slice_mask(labels, 2, 1, 4)
    assert np.array_equal(labels, before)
    assert copied.dtype == np.uint8
    for z in range(1, 5):
        np.testing.assert_array_equal(copied[z], labels[2])
    np.testing.assert_array_equal(copied[0], labels[0])
    np.testing.assert_array_equal(copied[5], labels[5])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((6, 0, 1), "source_index=6 is out of range"),
        ((0, 3, 9), "stop=9"),
        ((0, 4, 2), "must not exceed"),
    ],
)
def test_copy_slice_mask_rejects_bad_indices(args, message):
    with pytest.raises(InvalidInputError, match=message):
        copy_slice_mask(np.zeros((6, 4, 4), dtype=bool), *args)


def test_labels_to_bool_selects_all_or_one_label():
    labels = np.array([[0, 1, 2], [2, 0, 1]])
    np.testing.assert_array_equal(labels_to_bool(labels), labels != 0)
    np.testing.assert_array_equal(labels_to_bool(labels, 2), labels == 2)


def _textured_slice(seed: int, n: int = 192) -> np.ndarray:
    rng = np.random.default_rng(seed)
    texture = ndi.gaussian_filter(rng.normal(size=(n, n)), 2) * 300
    return 2000 + texture + rng.normal(0, 40, (n, n))


def _radius_map(n: int = 192) -> np.ndarray:
    """Distance from the rotation axis (n // 2, n // 2), as in iradon and the phantoms."""
    yy, xx = np.indices((n, n))
    return np.hypot(yy - n // 2, xx - n // 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ring_detector_finds_rings_at_known_radii(seed):
    radius = _radius_map()
    # one bright and one dark ring, each ~2x the pixel noise+texture spread
    image = (
        _textured_slice(seed)
        + 120 * (np.abs(radius - 30) < 0.5)
        - 120 * (np.abs(radius - 70) < 0.5)
    )
    mask = detect_ring_artifacts(image.astype(np.uint16))
    assert mask.shape == image.shape and mask.dtype == bool
    found = set(np.rint(radius[mask]).astype(int))
    assert found == {29, 30, 31, 69, 70, 71}  # the ring radii, widened by margin=1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ring_detector_finds_nothing_in_a_ring_free_image(seed):
    assert not detect_ring_artifacts(_textured_slice(seed).astype(np.uint16)).any()


def test_ring_detector_ignores_the_edge_of_a_cylindrical_sample():
    image = _textured_slice(5)
    image[_radius_map() > 80] = 200  # air around the sample
    assert not detect_ring_artifacts(image.astype(np.uint16)).any()


def test_ring_detector_averages_a_volume_and_returns_a_volume_mask():
    radius = _radius_map()
    ring = 18 * (np.abs(radius - 45) < 0.5)  # too faint to find in any single slice
    volume = np.stack([_textured_slice(s) + ring for s in range(8)]).astype(np.float32)
    assert not any(detect_ring_artifacts(plane).any() for plane in volume)
    mask = detect_ring_artifacts(volume, min_contrast=10.0)
    assert mask.shape == volume.shape
    assert np.array_equal(mask[0], mask[-1])
    assert set(np.rint(radius[mask[0]]).astype(int)) == {44, 45, 46}


def test_ring_detector_min_contrast_rejects_weak_rings():
    radius = _radius_map()
    image = _textured_slice(0) + 120 * (np.abs(radius - 30) < 0.5)
    assert not detect_ring_artifacts(image, min_contrast=500.0).any()


@pytest.mark.parametrize("seed", [0, 1])
def test_ring_detector_matches_the_true_ring_mask_of_the_rock_phantom(seed):
    from napari_scigen.core.phantoms import make_rock_volume

    phantom = make_rock_volume((16, 128, 128), seed=seed)
    found = detect_ring_artifacts(phantom.volume)[0]
    truth = phantom.ring_mask
    iou = np.count_nonzero(found & truth) / np.count_nonzero(found | truth)
    assert iou > 0.5, iou
    assert found.mean() < 2 * truth.mean()  # the old detector masked ~half the volume
    # the same rock scanned without detector errors: nothing to mask
    assert not detect_ring_artifacts(phantom.clean).any()


def test_ring_detector_finds_nothing_in_the_ring_free_fibre_phantom():
    from napari_scigen.core.phantoms import make_fibre_volume

    assert not detect_ring_artifacts(make_fibre_volume((8, 128, 128)).volume).any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"sectors": 1}, "sectors"), ({"n_sigma": 0}, "n_sigma"), ({"smooth_radius": 0}, "smooth")],
)
def test_ring_detector_rejects_bad_parameters(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        detect_ring_artifacts(np.zeros((32, 32)), **kwargs)
