"""Biharmonic inpainting engine (classical baseline)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from skimage.restoration import inpaint_biharmonic

from napari_scigen.core.progress import Cancelled, CancelToken, drain
from napari_scigen.core.validation import InvalidInputError
from napari_scigen.engines.inpainting.biharmonic import BiharmonicParams as InpaintParams
from napari_scigen.engines.inpainting.biharmonic import run_biharmonic as run_inpaint


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _textured(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        low, high = max(info.min, -3000), min(info.max, 3000)
        return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
    return rng.normal(0.5, 0.2, size=shape).astype(dtype)


def _blob_mask(shape, centres, radius) -> np.ndarray:
    yy, xx = np.indices(shape[-2:])
    mask = np.zeros(shape[-2:], dtype=bool)
    for cy, cx in centres:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return np.broadcast_to(mask, shape).copy()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("ndim", [2, 3])
def test_inpaint_keeps_pixels_outside_mask_bit_identical(dtype, ndim):
    shape = (48, 48) if ndim == 2 else (3, 48, 48)
    image = _textured(shape, dtype)
    mask = _blob_mask(shape, [(15, 15), (30, 34)], 5)
    result = drain(run_inpaint(image, mask))
    assert result.data.dtype == image.dtype and result.data.shape == image.shape
    assert np.array_equal(result.data[~mask], image[~mask])
    assert not np.array_equal(result.data[mask], image[mask])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_inpaint_does_not_modify_its_inputs(dtype):
    image = _textured((2, 40, 40), dtype)
    mask = _blob_mask((2, 40, 40), [(20, 20)], 6).astype(np.uint8)
    before_image, before_mask = _digest(image), _digest(mask)
    drain(run_inpaint(image, mask))
    assert _digest(image) == before_image and _digest(mask) == before_mask


def test_inpaint_fills_a_linear_ramp_within_one_grey_level():
    yy, xx = np.indices((64, 64))
    ramp = (200 + 7 * xx + 3 * yy).astype(np.uint16)
    mask = _blob_mask(ramp.shape, [(30, 28)], 10)
    damaged = ramp.copy()
    damaged[mask] = 0  # the fill must not depend on the values under the mask
    result = drain(run_inpaint(damaged, mask))
    error = np.abs(result.data.astype(np.int64) - ramp.astype(np.int64))
    assert error[mask].max() <= 1


def test_inpaint_result_stays_within_the_input_range():
    rng = np.random.default_rng(3)
    image = rng.integers(1000, 1200, size=(50, 50)).astype(np.uint16)
    image[20:30, 20:30] = 4000  # the brightest pixels are inside the mask
    mask = np.zeros(image.shape, dtype=bool)
    mask[18:32, 18:32] = True
    result = drain(run_inpaint(image, mask))
    assert result.data.min() >= image.min() and result.data.max() <= image.max()
    # the fill comes from the surroundings, not from the replaced bright square
    assert result.data[mask].max() < 1200


def test_inpaint_large_slice_solves_only_boxes_around_the_mask():
    image = _textured((1100, 1100), np.uint16, seed=1)
    mask = np.zeros(image.shape, dtype=bool)
    mask[100:110, 120:126] = True
    mask[900:907, 950:962] = True
    params = InpaintParams(tile_size=128, context=16)
    result = drain(run_inpaint(image, mask, params))
    extra = result.provenance["extra"]
    assert extra["n_boxes"] == 2 and extra["boxes_per_slice"] == [2]
    assert extra["tiled_boxes_per_slice"] == [0]
    # each box is the region grown by `context`: a direct solve on that crop agrees exactly
    for ys, xs in [(slice(84, 126), slice(104, 142)), (slice(884, 923), slice(934, 978))]:
        crop = image[ys, xs].astype(np.float64)
        expected = np.rint(inpaint_biharmonic(crop, mask[ys, xs])).astype(np.uint16)
        np.testing.assert_array_equal(result.data[ys, xs], expected)
    assert np.array_equal(result.data[~mask], image[~mask])


def test_inpaint_region_larger_than_a_tile_is_close_to_a_direct_solve():
    yy, xx = np.indices((220, 220))
    image = (1000 + 100 * np.sin(yy / 25) + 80 * np.cos(xx / 20) + 0.01 * (xx - 110) ** 2).astype(
        np.float32
    )
    mask = np.zeros(image.shape, dtype=bool)
    mask[40:180, 50:170] = True
    result = drain(run_inpaint(image, mask, InpaintParams(tile_size=64, context=4)))
    assert result.provenance["extra"]["tiled_boxes_per_slice"] == [1]
    direct = inpaint_biharmonic(image.astype(np.float64), mask)
    difference = np.abs(result.data.astype(np.float64) - direct)[mask]
    span = float(image.max() - image.min())
    assert difference.mean() < 0.01 * span
    assert difference.max() < 0.05 * span
    assert np.array_equal(result.data[~mask], image[~mask])


def test_inpaint_volume_skips_slices_with_empty_mask_and_reports_each_slice():
    image = _textured((4, 32, 32), np.int16)
    mask = np.zeros(image.shape, dtype=bool)
    mask[1, 10:15, 10:15] = True
    mask[3, 20:24, 5:9] = True
    events = []
    result = drain(run_inpaint(image, mask), on_progress=events.append)
    assert [e.message for e in events] == [f"inpaint slice {i}/4" for i in range(1, 5)]
    assert events[-1].fraction == 1.0
    extra = result.provenance["extra"]
    assert extra["skipped_slices"] == [0, 2]
    assert extra["masked_pixels"] == 25 + 16
    assert np.array_equal(result.data[0], image[0]) and np.array_equal(result.data[2], image[2])


def test_inpaint_broadcasts_a_2d_mask_over_a_volume():
    image = _textured((3, 32, 32), np.uint8)
    mask2d = _blob_mask((32, 32), [(16, 16)], 4)
    result = drain(run_inpaint(image, mask2d))
    assert result.provenance["extra"]["boxes_per_slice"] == [1, 1, 1]
    for z in range(3):
        assert np.array_equal(result.data[z][~mask2d], image[z][~mask2d])
        assert not np.array_equal(result.data[z][mask2d], image[z][mask2d])


def test_inpaint_provenance_records_engine_params_and_source():
    image = _textured((30, 30), np.uint16)
    mask = _blob_mask(image.shape, [(15, 15)], 3)
    result = drain(run_inpaint(image, mask, InpaintParams(tile_size=64, context=8)))
    record = result.provenance
    assert record["engine"] == "inpaint-biharmonic"
    assert record["params"] == {"tile_size": 64, "context": 8}
    assert record["source"] == {"shape": [30, 30], "dtype": "uint16"}
    assert record["extra"]["masked_pixels"] == int(mask.sum())
    json.dumps(record)


def test_inpaint_cancel_after_first_slice_raises_and_leaves_input_unchanged():
    image = _textured((3, 32, 32), np.uint16)
    mask = _blob_mask(image.shape, [(16, 16)], 4)
    before = _digest(image)
    token = CancelToken()
    generator = run_inpaint(image, mask, cancel=token)
    first = next(generator)
    assert first.step == 1
    token.cancel()
    with pytest.raises(Cancelled):
        next(generator)
    assert _digest(image) == before


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [
        (np.zeros((20, 20), np.uint8), np.zeros((20, 20), bool), "mask is empty"),
        (np.zeros((20, 20), np.uint8), np.ones((20, 21), bool), "does not match"),
        (np.full((20, 20), np.nan, np.float32), np.eye(20, dtype=bool), "NaN"),
        (np.zeros((20, 20, 3), np.uint8), np.ones((20, 20, 3), bool), "RGB"),
        (np.zeros((2, 20, 20), np.uint8), np.ones((2, 20, 20), bool), "masked entirely"),
    ],
)
def test_inpaint_rejects_bad_input_with_a_clear_message(image, mask, message):
    with pytest.raises(InvalidInputError, match=message):
        drain(run_inpaint(image, mask))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"context": 1}, "context must be >= 2"),
        ({"tile_size": 40, "context": 16}, "tile_size"),
        ({"tile_size": 100.5}, "integer"),
    ],
)
def test_inpaint_params_reject_invalid_values(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        InpaintParams(**kwargs)


def test_inpaint_mask_touching_the_slice_edge_matches_a_direct_solve():
    image = _textured((60, 70), np.float32, seed=4)
    mask = np.zeros(image.shape, dtype=bool)
    mask[0:6, 60:70] = True  # corner region: its box is clipped by the slice
    result = drain(run_inpaint(image, mask, InpaintParams(tile_size=64, context=8)))
    direct = inpaint_biharmonic(image.astype(np.float64), mask).astype(np.float32)
    np.testing.assert_allclose(result.data[mask], direct[mask], rtol=1e-5)
    assert np.array_equal(result.data[~mask], image[~mask])


def test_inpaint_fills_only_the_chosen_slices():
    image = _textured((3, 32, 32), np.uint16)
    mask = _blob_mask(image.shape, [(16, 16)], 4)
    result = drain(run_inpaint(image, mask, slices=[1]))
    assert np.array_equal(result.data[[0, 2]], image[[0, 2]])  # masked but not chosen
    assert not np.array_equal(result.data[1][mask[1]], image[1][mask[1]])
    assert result.provenance["extra"]["slices"] == [1]
    assert result.provenance["extra"]["masked_pixels"] == int(mask[1].sum())
