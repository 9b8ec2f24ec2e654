"""Stable Diffusion slice canvas: latent masks, compositing, windows, padding, crops, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen.core.masks import ramp_mask
from napari_scigen.core.stack import percentile_window
from napari_scigen.core.tiling import core_tiles, grid_tiles
from napari_scigen.core.validation import InvalidInputError
from napari_scigen.engines.sd import canvas
from napari_scigen.engines.sd.numerics import gray_to_rgb, rgb_to_gray


def test_latent_mask_never_misses_a_masked_pixel():
    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = rng.random((48, 64)) > 0.995  # a few isolated pixels anywhere in a block
        latent = canvas.latent_mask(mask, 8)
        assert latent.shape == (6, 8)
        back = canvas.upsample_latent_mask(latent, 8)
        assert back[mask].all(), "a masked pixel fell into an unmasked latent cell"
        # and no latent cell is set without a masked pixel in its block
        blocks = mask.reshape(6, 8, 8, 8).any(axis=(1, 3))
        np.testing.assert_array_equal(latent > 0, blocks)


def test_latent_mask_single_corner_pixel_marks_its_block():
    mask = np.zeros((16, 16), dtype=bool)
    mask[15, 8] = True
    latent = canvas.latent_mask(mask, 8)
    np.testing.assert_array_equal(latent, [[0, 0], [0, 1]])


def test_latent_mask_rejects_shapes_not_multiple_of_factor():
    with pytest.raises(ValueError, match="multiple"):
        canvas.latent_mask(np.zeros((10, 16), dtype=bool), 8)


def test_ramp_weights_are_zero_outside_mask_and_ramp_inside():
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:30, 10:30] = True
    weights = ramp_mask(mask, 4)
    assert weights.dtype == np.float64
    assert np.all(weights[~mask] == 0.0)
    assert weights[20, 20] == 1.0
    assert 0 < weights[10, 20] < weights[12, 20] < weights[14, 20] <= 1.0
    np.testing.assert_array_equal(ramp_mask(mask, 0), mask.astype(float))
    # the slice border is not an edge: a fully masked slice is all ones
    np.testing.assert_array_equal(ramp_mask(np.ones((6, 7), bool), 3), np.ones((6, 7)))
    with pytest.raises(InvalidInputError, match="width"):
        ramp_mask(mask, -1)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_composite_keeps_pixels_outside_mask_bit_identical(dtype):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        original = rng.integers(info.min, info.max, (32, 32), endpoint=True).astype(dtype)
        generated = rng.integers(info.min, info.max, (32, 32), endpoint=True).astype(dtype)
    else:
        original = rng.normal(0, 1e3, (32, 32)).astype(dtype)
        generated = rng.normal(0, 1e3, (32, 32)).astype(dtype)
    mask = np.zeros((32, 32), dtype=bool)
    mask[5:20, 8:25] = True
    out = canvas.composite(original, generated, ramp_mask(mask, 3))
    assert out.dtype == original.dtype
    assert out.tobytes() != original.tobytes()
    np.testing.assert_array_equal(out[~mask].view(np.uint8), original[~mask].view(np.uint8))
    # deep inside the mask the generated value wins
    assert out[12, 16] == generated[12, 16]


def test_window_round_trip_preserves_uint16_values_inside_window():
    rng = np.random.default_rng(1)
    data = rng.integers(1000, 60000, (64, 64)).astype(np.uint16)
    window = percentile_window(data, 0.0, 100.0)
    back = window.from_unit(window.to_unit(data))
    assert back.dtype == np.uint16
    assert np.abs(back.astype(np.int64) - data).max() <= 1  # float32 unit values, rounding
    rgb = gray_to_rgb(window.to_unit(data)[None])
    assert rgb.shape == (1, 64, 64, 3)
    np.testing.assert_allclose(rgb_to_gray(rgb)[0], window.to_unit(data))
    assert canvas.run_window(data, (0.0, 100.0)).as_dict() == window.as_dict()


def test_finish_slice_maps_back_into_input_range_and_dtype():
    data = np.full((16, 16), 30000, dtype=np.uint16)
    data[::2] = 10000
    window = percentile_window(data, 0.0, 100.0)
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:12, 4:12] = True
    unit = np.full((16, 16), 2.0, dtype=np.float32)  # out-of-range model output gets clipped
    out = canvas.finish_slice(data, mask, unit, window, feather=0)
    assert out.dtype == np.uint16
    assert out[mask].max() == 30000 and out[mask].min() == 30000
    np.testing.assert_array_equal(out[~mask], data[~mask])


def test_pad_widths_reach_resolution_and_multiples_of_8():
    pads = canvas.pad_widths((50, 130), 64)
    (top, bottom), (left, right) = pads
    assert 50 + top + bottom == 64
    assert (130 + left + right) % 8 == 0 and 130 + left + right >= 130
    padded = canvas.reflect_pad(np.arange(50 * 130, dtype=float).reshape(50, 130), pads)
    np.testing.assert_array_equal(canvas.unpad(padded, pads), np.arange(50 * 130).reshape(50, 130))


def test_core_tiles_cover_every_masked_pixel_with_model_size_windows():
    mask = np.zeros((150, 170), dtype=bool)
    mask[10:14, 20:25] = True
    mask[120:140, 100:160] = True
    tiles = core_tiles(mask, 64, 8)
    covered = np.zeros_like(mask)
    for tile in tiles:
        window, core = tile.window, tile.core
        assert window.shape == (64, 64)
        assert 0 <= window.y0 <= 150 - 64 and 0 <= window.x0 <= 170 - 64
        # the core lies inside the crop window
        assert window.y0 <= core.y0 and core.y1 <= window.y1
        assert window.x0 <= core.x0 and core.x1 <= window.x1
        assert not covered[core.slices].any(), "cores overlap"
        covered[core.slices] = True
    assert covered[mask].all()
    assert core_tiles(np.zeros((64, 64), dtype=bool), 64, 8) == []
    with pytest.raises(ValueError, match="at least 64"):
        core_tiles(np.ones((40, 80), dtype=bool), 64, 8)


def test_grid_tiles_give_every_pixel_exactly_one_core():
    count = np.zeros((100, 130), dtype=int)
    for tile in grid_tiles((100, 130), 64):
        assert tile.window.shape == (64, 64)
        count[tile.core.slices] += 1
    assert np.all(count == 1)


def test_slice_canvas_crops_paste_only_their_own_core():
    rng = np.random.default_rng(2)
    data = rng.integers(1000, 50000, (100, 90)).astype(np.uint16)
    mask = np.zeros(data.shape, dtype=bool)
    mask[5:12, 5:12] = True
    mask[80:95, 70:85] = True
    window = percentile_window(data, 0.5, 99.5)
    slice_canvas = canvas.SliceCanvas.create(
        3, data, mask, window, resolution=64, context=8, seed=canvas.slice_seed(10, 3)
    )
    assert slice_canvas.seed == 13 and len(slice_canvas.crops) == 2
    before = slice_canvas.unit.copy()
    unit, edit_mask = slice_canvas.crop_input(0)
    assert unit.shape == edit_mask.shape == (64, 64)
    assert edit_mask.sum() == 7 * 7  # only the first region is this crop's
    slice_canvas.paste(0, np.full(unit.shape, 5.0, dtype=np.float32), edit_mask)
    changed = slice_canvas.unit != before
    assert changed.sum() == 7 * 7 and np.all(slice_canvas.unit[changed] == 1.0)  # clipped
    for y0, x0, y1, x1 in slice_canvas.crops_in_slice_coordinates():
        assert (y1 - y0, x1 - x0) == (64, 64)
    np.testing.assert_array_equal(slice_canvas.result_unit().shape, data.shape)


def test_selected_slices_and_seeds():
    volume = np.zeros((6, 4, 4), dtype=np.uint8)
    assert canvas.selected_slices(volume, None) == list(range(6))
    assert canvas.selected_slices(volume, (4, 1, 4)) == [1, 4]
    assert canvas.selected_slices(volume[0], None) == [0]
    with pytest.raises(InvalidInputError, match="outside"):
        canvas.selected_slices(volume, [6])
    with pytest.raises(InvalidInputError, match="empty"):
        canvas.selected_slices(volume, [])
    assert canvas.slice_seed(10, 3) == 13
    assert canvas.slice_seed(10, 3, 1) == 13 + canvas.VARIANT_SEED_STRIDE


def test_batch_rounds_run_a_slices_crops_in_order():
    class Fake:
        def __init__(self, name, n):
            self.name, self.crops = name, [None] * n

    a, b, c = Fake("a", 2), Fake("b", 1), Fake("c", 3)
    rounds = canvas.batch_rounds([a, b, c], 2)
    names = [[(item.name, k) for item, k in r] for r in rounds]
    assert names == [[("a", 0), ("b", 0)], [("a", 1)], [("c", 0)], [("c", 1)], [("c", 2)]]
