"""Shared Stable Diffusion machinery: masks, composites, windows, crops, seeds, offline errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_scigen.core.models import ModelNotAvailableError, missing_hub_model_message
from napari_scigen.core.progress import Cancelled, CancelToken
from napari_scigen.core.stack import percentile_window
from napari_scigen.core.validation import InvalidInputError
from napari_scigen.engines import _sd_common as common


def test_latent_mask_never_misses_a_masked_pixel():
    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = rng.random((48, 64)) > 0.995  # a few isolated pixels anywhere in a block
        latent = common.latent_mask(mask, 8)
        assert latent.shape == (6, 8)
        back = common.upsample_latent_mask(latent, 8)
        assert back[mask].all(), "a masked pixel fell into an unmasked latent cell"
        # and no latent cell is set without a masked pixel in its block
        blocks = mask.reshape(6, 8, 8, 8).any(axis=(1, 3))
        np.testing.assert_array_equal(latent > 0, blocks)


def test_latent_mask_single_corner_pixel_marks_its_block():
    mask = np.zeros((16, 16), dtype=bool)
    mask[15, 8] = True
    latent = common.latent_mask(mask, 8)
    np.testing.assert_array_equal(latent, [[0, 0], [0, 1]])


def test_latent_mask_rejects_shapes_not_multiple_of_factor():
    with pytest.raises(ValueError, match="multiple"):
        common.latent_mask(np.zeros((10, 16), dtype=bool), 8)


def test_feather_weights_are_zero_outside_mask_and_ramp_inside():
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:30, 10:30] = True
    weights = common.feather_weights(mask, 4)
    assert np.all(weights[~mask] == 0.0)
    assert weights[20, 20] == 1.0
    assert 0 < weights[10, 20] < weights[12, 20] < weights[14, 20] <= 1.0
    np.testing.assert_array_equal(common.feather_weights(mask, 0), mask.astype(float))


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
    out = common.composite(original, generated, common.feather_weights(mask, 3))
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
    rgb = common.gray_to_rgb(window.to_unit(data)[None])
    assert rgb.shape == (1, 64, 64, 3)
    np.testing.assert_allclose(common.rgb_to_gray(rgb)[0], window.to_unit(data))


def test_finish_slice_maps_back_into_input_range_and_dtype():
    data = np.full((16, 16), 30000, dtype=np.uint16)
    data[::2] = 10000
    window = percentile_window(data, 0.0, 100.0)
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:12, 4:12] = True
    unit = np.full((16, 16), 2.0, dtype=np.float32)  # out-of-range model output gets clipped
    out = common.finish_slice(data, mask, unit, window, feather=0)
    assert out.dtype == np.uint16
    assert out[mask].max() == 30000 and out[mask].min() == 30000
    np.testing.assert_array_equal(out[~mask], data[~mask])


def test_pad_widths_reach_resolution_and_multiples_of_8():
    pads = common.pad_widths((50, 130), 64)
    (top, bottom), (left, right) = pads
    assert 50 + top + bottom == 64
    assert (130 + left + right) % 8 == 0 and 130 + left + right >= 130
    padded = common.reflect_pad(np.arange(50 * 130, dtype=float).reshape(50, 130), pads)
    np.testing.assert_array_equal(common.unpad(padded, pads), np.arange(50 * 130).reshape(50, 130))


def test_plan_crops_cover_every_masked_pixel_with_model_size_windows():
    mask = np.zeros((150, 170), dtype=bool)
    mask[10:14, 20:25] = True
    mask[120:140, 100:160] = True
    crops = common.plan_crops(mask, 64, 8)
    covered = np.zeros_like(mask)
    for crop in crops:
        assert crop.size == 64
        assert 0 <= crop.top <= 150 - 64 and 0 <= crop.left <= 170 - 64
        cy0, cy1, cx0, cx1 = crop.core
        # the core lies inside the crop window
        assert crop.top <= cy0 and cy1 <= crop.top + 64
        assert crop.left <= cx0 and cx1 <= crop.left + 64
        assert not covered[cy0:cy1, cx0:cx1].any(), "cores overlap"
        covered[cy0:cy1, cx0:cx1] = True
    assert covered[mask].all()
    assert common.plan_crops(np.zeros((64, 64), dtype=bool), 64, 8) == []


def test_select_slices_and_seeds():
    volume = np.zeros((6, 4, 4), dtype=np.uint8)
    assert common.select_slices(volume, None) == list(range(6))
    assert common.select_slices(volume, slice(2, 5)) == [2, 3, 4]
    assert common.select_slices(volume, [4, 1, 4]) == [1, 4]
    with pytest.raises(InvalidInputError, match="outside"):
        common.select_slices(volume, [6])
    assert common.slice_seed(10, 3) == 13
    assert common.slice_seed(10, 3, 1) == 13 + common.VARIANT_SEED_STRIDE


def test_relay_call_forwards_steps_and_result():
    def call(relay):
        for _ in range(3):
            relay.step()
        return "done"

    steps = common.relay_call(call, None)
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as stop:
            result = stop.value
            break
    assert seen == [1, 1, 1] and result == "done"


def test_relay_call_cancel_while_handling_a_step_stops_at_the_next_step():
    token = CancelToken()
    reported = []

    def call(relay):
        for step in range(100):
            reported.append(step)
            relay.step_or_raise()
        return "never"

    steps = common.relay_call(call, token)
    assert next(steps) == 1
    time.sleep(0.05)  # the worker waits for the event to be handed on
    assert reported == [0]
    token.cancel()
    with pytest.raises(Cancelled):
        next(steps)
    assert reported == [0]


def test_relay_call_stops_worker_when_consumer_closes():
    stopped = []

    def call(relay):
        relay.step()
        stopped.append(relay.should_stop())
        return "ignored"

    steps = common.relay_call(call, None)
    next(steps)
    steps.close()  # releases and joins the worker, which sees the stop request
    assert stopped == [True]


def test_locate_model_offline_hub_id_fails_short_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as info:
        common.locate_model(
            "someone/not-cached-model",
            what="Stable Diffusion",
            index_file="model_index.json",
            local_files_only=False,
        )
    message = str(info.value)
    assert message == missing_hub_model_message("someone/not-cached-model", "Stable Diffusion")
    assert len(message.splitlines()) <= 8
    assert not (tmp_path / "hf").exists()


def test_locate_model_rejects_missing_and_incomplete_local_directories(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        common.locate_model(
            str(tmp_path / "nope" / "model"),
            what="ControlNet",
            index_file="config.json",
            local_files_only=True,
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="config.json"):
        common.locate_model(
            str(tmp_path / "empty"),
            what="ControlNet",
            index_file="config.json",
            local_files_only=True,
        )


def test_unavailable_errors_are_recognised_through_cause_chain():
    class LocalEntryNotFoundError(Exception):
        pass

    try:
        try:
            raise LocalEntryNotFoundError("not in cache")
        except LocalEntryNotFoundError as inner:
            raise OSError("Error no file named model_index.json") from inner
    except OSError as outer:
        assert common._is_unavailable_error(outer)
    assert not common._is_unavailable_error(ValueError("shape mismatch"))


def test_params_validation_messages():
    with pytest.raises(InvalidInputError, match="multiple of 8"):
        common.check_common_params(
            steps=10,
            guidance_scale=7.5,
            resolution=100,
            context=8,
            feather=2,
            batch_size=1,
            window_percentiles=(0.5, 99.5),
        )
    with pytest.raises(InvalidInputError, match="context"):
        common.check_common_params(
            steps=10,
            guidance_scale=7.5,
            resolution=64,
            context=30,
            feather=2,
            batch_size=1,
            window_percentiles=(0.5, 99.5),
        )
