"""Boxes around masked regions, covering tiles and blending weights."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from napari_scigen.core.tiling import Box, blend_weights, mask_bounding_boxes, tiles_covering


def test_box_slices_index_the_half_open_rectangle():
    box = Box(2, 5, 3, 7)
    image = np.arange(100).reshape(10, 10)
    assert box.shape == (3, 4)
    assert image[box.slices].shape == (3, 4)
    assert image[box.slices][0, 0] == image[2, 3]


@pytest.mark.parametrize("coords", [(3, 3, 0, 1), (0, 1, 5, 2), (-1, 2, 0, 1)])
def test_box_rejects_empty_or_negative_extents(coords):
    with pytest.raises(ValueError, match="Box needs"):
        Box(*coords)


def test_box_overlap_and_union():
    a, b, c = Box(0, 4, 0, 4), Box(3, 6, 3, 6), Box(4, 6, 0, 4)
    assert a.overlaps(b) and b.overlaps(a)
    assert not a.overlaps(c)  # touching edges share no pixel
    assert a.union(b) == Box(0, 6, 0, 6)


@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [((100, 100), 32, 8), ((97, 130), 40, 10), ((20, 300), 64, 0), ((10, 10), 64, 16)],
)
def test_tiles_covering_covers_every_pixel_with_flush_last_tiles(shape, tile, overlap):
    tiles = tiles_covering(shape, tile, overlap)
    coverage = np.zeros(shape, dtype=int)
    for box in tiles:
        assert box.y1 - box.y0 <= tile and box.x1 - box.x0 <= tile
        coverage[box.slices] += 1
    assert coverage.min() >= 1
    assert max(b.y1 for b in tiles) == shape[0] and max(b.x1 for b in tiles) == shape[1]
    # neighbours along each axis overlap by at least `overlap`
    y_starts = sorted({b.y0 for b in tiles})
    for first, second in pairwise(y_starts):
        assert first + min(tile, shape[0]) - second >= overlap


def test_tiles_covering_rejects_overlap_not_below_tile():
    with pytest.raises(ValueError, match="overlap"):
        tiles_covering((50, 50), 16, 16)


def test_blend_weights_ramp_from_edges_and_stay_positive():
    weights = blend_weights((10, 12), 3)
    assert weights.dtype == np.float32
    assert weights.min() > 0 and weights.max() == 1.0
    np.testing.assert_allclose(weights[5, :4], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(weights, weights[::-1, ::-1])
    assert np.all(blend_weights((5, 5), 0) == 1.0)


def test_blended_overlapping_tiles_reproduce_a_constant_field():
    shape, tile, overlap = (70, 90), 32, 8
    accumulated = np.zeros(shape)
    total = np.zeros(shape)
    for box in tiles_covering(shape, tile, overlap):
        weight = blend_weights(box.shape, overlap)
        accumulated[box.slices] += weight * 5.0
        total[box.slices] += weight
    np.testing.assert_allclose(accumulated / total, 5.0)


def test_mask_bounding_boxes_separate_far_regions_with_clipped_context():
    mask = np.zeros((200, 200), dtype=bool)
    mask[2:6, 3:8] = True  # near the corner: context is clipped
    mask[150:160, 120:125] = True
    boxes = mask_bounding_boxes(mask, context=10)
    assert boxes == [Box(0, 16, 0, 18), Box(140, 170, 110, 135)]


def test_mask_bounding_boxes_merge_regions_whose_context_overlaps():
    mask = np.zeros((100, 100), dtype=np.uint8)
    mask[10:15, 10:15] = 3
    mask[10:15, 30:35] = 7  # gap of 15 px < 2 * context
    assert mask_bounding_boxes(mask, context=8) == [Box(2, 23, 2, 43)]
    assert len(mask_bounding_boxes(mask, context=4)) == 2


def test_mask_bounding_boxes_merge_boxes_that_overlap_only_as_rectangles():
    # An L-shaped region's box contains a far-away pixel's grown box corner.
    mask = np.zeros((60, 60), dtype=bool)
    mask[5:50, 5] = True
    mask[45, 5:50] = True
    mask[10, 40] = True  # inside the L's bounding box, 35 px from any L pixel
    boxes = mask_bounding_boxes(mask, context=2)
    assert boxes == [Box(3, 52, 3, 52)]


def test_mask_bounding_boxes_contain_every_masked_pixel_and_never_overlap():
    rng = np.random.default_rng(0)
    mask = rng.random((150, 150)) > 0.995
    boxes = mask_bounding_boxes(mask, context=3)
    covered = np.zeros(mask.shape, dtype=int)
    for box in boxes:
        covered[box.slices] += 1
    assert covered[mask].min() == 1
    assert covered.max() == 1


def test_mask_bounding_boxes_min_size_grows_boxes_inside_the_slice():
    mask = np.zeros((100, 120), dtype=bool)
    mask[1:3, 110:115] = True
    (box,) = mask_bounding_boxes(mask, context=2, min_size=64)
    assert box.shape == (64, 64)
    assert box.y0 == 0 and box.x1 == 120
    assert mask[box.slices].sum() == mask.sum()


def test_mask_bounding_boxes_max_size_splits_big_regions_into_tiles():
    mask = np.zeros((300, 300), dtype=bool)
    mask[20:260, 30:100] = True
    boxes = mask_bounding_boxes(mask, context=4, max_size=64)
    assert len(boxes) > 1
    covered = np.zeros(mask.shape, dtype=bool)
    for box in boxes:
        assert max(box.shape) <= 64
        assert mask[box.slices].any()
        covered[box.slices] = True
    assert covered[mask].all()


def test_mask_bounding_boxes_empty_mask_gives_no_boxes():
    assert mask_bounding_boxes(np.zeros((10, 10)), context=2) == []


def test_mask_bounding_boxes_reject_bad_arguments():
    mask = np.ones((10, 10), dtype=bool)
    with pytest.raises(ValueError, match="does not match"):
        mask_bounding_boxes(mask, context=1, shape=(10, 12))
    with pytest.raises(ValueError, match="context"):
        mask_bounding_boxes(mask, context=-1)
    with pytest.raises(ValueError, match="min_size"):
        mask_bounding_boxes(mask, context=1, min_size=32, max_size=16)
    with pytest.raises(ValueError, match="2D"):
        mask_bounding_boxes(np.ones((2, 10, 10)), context=1)


def test_mask_bounding_boxes_handle_thousands_of_specks():
    rng = np.random.default_rng(1)
    mask = rng.random((400, 400)) > 0.98  # ~3000 one-pixel regions
    boxes = mask_bounding_boxes(mask, context=2)
    covered = np.zeros(mask.shape, dtype=int)
    for box in boxes:
        covered[box.slices] += 1
    assert covered[mask].min() == 1
    assert covered.max() == 1
    assert len(boxes) < mask.sum()
