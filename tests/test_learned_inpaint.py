"""The learned inpainting engine: mask respected, self-validated against biharmonic."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen import api
from napari_scigen.engines.learned.context import slice_inputs, smooth_fill, z_line_fill
from napari_scigen.engines.learned.shapes import MaskShapes

pytest.importorskip("torch")

TINY = {
    "init": "scratch",
    "train_steps": 8,
    "crop_size": 16,
    "batch_size": 4,
    "base_channels": 8,
    "tta": 2,
    "validation_masks": 2,
    "threads": 1,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    z, y, x = np.indices((8, 32, 32))
    blobs = ((y - 12 - 0.3 * z) ** 2 + (x - 14) ** 2 <= 36) | ((y - 24) ** 2 + (x - 22) ** 2 <= 16)
    noise = np.random.default_rng(0).normal(0, 2, z.shape)
    return (90 + 100 * blobs + noise).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    yy, xx = np.mgrid[:32, :32]
    region = np.zeros((8, 32, 32), np.uint8)
    region[3:5] = (yy - 16) ** 2 + (xx - 16) ** 2 <= 16
    return region


def test_pixels_outside_the_mask_are_bit_identical_and_the_input_untouched(volume, mask):
    damaged = volume.copy()
    damaged[mask != 0] = 0
    before = damaged.copy()
    result = api.inpaint(damaged, mask, method="learned", force_learned=True, **TINY)
    np.testing.assert_array_equal(result.data[mask == 0], damaged[mask == 0])
    np.testing.assert_array_equal(damaged, before)
    assert result.data.dtype == np.uint8 and result.data.shape == volume.shape
    assert result.data[mask != 0].min() > 0  # the hole was filled
    extra = result.provenance["extra"]
    assert result.provenance["engine"] == "inpaint-learned" and extra["filled_with"] == "learned"
    assert set(extra["self_validation"]["scores"]) == {"learned", "biharmonic"}
    uncertainty = result.images["uncertainty"]
    assert uncertainty.shape == volume.shape and (uncertainty >= 0).all()
    assert not uncertainty[mask == 0].any()


def test_the_slice_selection_and_a_2d_image_are_respected(volume, mask):
    damaged = volume.copy()
    damaged[mask != 0] = 0
    result = api.inpaint(damaged, mask, method="learned", slices=[3], force_learned=True, **TINY)
    np.testing.assert_array_equal(result.data[4], damaged[4])  # masked but not selected
    assert not np.array_equal(result.data[3], damaged[3])
    image = damaged[3]
    flat = api.inpaint(image, mask[3], method="learned", **{**TINY, "validation_masks": 0})
    assert flat.data.shape == image.shape
    np.testing.assert_array_equal(flat.data[mask[3] == 0], image[mask[3] == 0])


def test_a_learned_fill_that_loses_falls_back_to_biharmonic(mask):
    # a plane ramp is harmonic: biharmonic inpainting rebuilds it exactly, a network cannot
    yy, xx = np.mgrid[:32, :32]
    ramp = np.broadcast_to(10 + 3 * yy + 2 * xx, mask.shape).astype(np.float32)
    damaged = np.where(mask != 0, 0, ramp).astype(np.float32)
    result = api.inpaint(damaged, mask, method="learned", **TINY)
    extra = result.provenance["extra"]
    assert extra["learned_lost_self_validation"] and extra["filled_with"] == "biharmonic"
    np.testing.assert_array_equal(result.data, api.inpaint(damaged, mask).data)


def test_the_inputs_carry_the_neighbouring_slices_along_z():
    stack = np.stack([np.full((8, 8), v, np.float32) for v in (0.0, 0.0, 0.0, 3.0)])
    unknown = np.zeros(stack.shape, bool)
    unknown[1:3, 2:6, 2:6] = True
    values, distance = z_line_fill(stack, unknown, 1)
    np.testing.assert_allclose(values[3, 3], 1.0)  # a third of the way from 0 (z=0) to 3 (z=3)
    assert distance[3, 3] == 1
    inputs = slice_inputs(stack, unknown, 1, context=1)
    assert inputs.shape == (8, 8, 8) and np.isfinite(inputs).all()
    filled = smooth_fill(np.where(unknown[1], 9.0, stack[1]), unknown[1])
    np.testing.assert_allclose(filled, 0.0, atol=1e-6)


def test_training_masks_look_like_the_users(mask):
    shapes = MaskShapes(mask.astype(bool), side=16)
    assert len(shapes.regions) == 1 and shapes.depth == 2
    rng = np.random.default_rng(0)
    drawn = [shapes.draw(rng, 8) for _ in range(20)]
    assert all(d.any() and d.shape[1:] == (16, 16) for d in drawn)
