"""Classical slice interpolation (linear, optical flow), its planning, drop_every/keep_every."""

from __future__ import annotations

import hashlib
import json
from itertools import pairwise

import numpy as np
import pytest

import napari_scigen.engines.interpolation.classical as classical
from napari_scigen import api
from napari_scigen.core.progress import Cancelled, CancelToken, drain
from napari_scigen.core.validation import InvalidInputError
from napari_scigen.engines.interpolation.classical import FlowParams
from napari_scigen.engines.interpolation.plan import drop_every, keep_every, plan_slices


def run_interpolate(volume, method="linear", *, cancel=None, **request):
    """The interpolation job through the API (the route every front-end takes)."""
    return api.interpolate_job(volume, method=method, cancel=cancel, **request)


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _random_volume(shape=(6, 24, 24), dtype=np.uint16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(100, 4000, size=shape).astype(dtype)


def _disk_frame(cx: float, n: int = 64) -> np.ndarray:
    """A soft, striped disk centred at column ``cx`` (texture helps the flow)."""
    yy, xx = np.indices((n, n), dtype=np.float64)
    disk = 1.0 / (1.0 + np.exp((np.hypot(yy - 32, xx - cx) - 10.0) / 1.0))
    return 50 + 150 * disk * (1 + 0.3 * np.sin(yy / 3))


@pytest.mark.parametrize("method", ["linear", "flow"])
def test_interpolate_keeps_kept_slices_bit_identical_and_input_unchanged(method):
    volume = _random_volume()
    before = _digest(volume)
    result = drain(run_interpolate(volume, method, missing=(2, 4)))
    assert result.data.shape == volume.shape and result.data.dtype == volume.dtype
    for z in (0, 1, 3, 5):
        assert np.array_equal(result.data[z], volume[z])
    assert _digest(volume) == before
    assert result.data.min() >= volume.min() and result.data.max() <= volume.max()


def test_linear_interpolation_is_exact_on_a_volume_linear_in_z():
    yy, xx = np.indices((16, 20))
    base = 500 + 3 * yy + 2 * xx
    volume = np.stack([base + 40 * z for z in range(7)]).astype(np.uint16)
    damaged = volume.copy()
    damaged[[2, 3, 5]] = 0  # values of missing slices must not matter
    result = drain(run_interpolate(damaged, missing=(2, 3, 5)))
    np.testing.assert_array_equal(result.data, volume)


def test_linear_interpolation_on_float32_matches_the_blend_formula():
    volume = _random_volume((4, 10, 10), np.float32, seed=2) / 7.0
    result = drain(run_interpolate(volume, missing=(1, 2)))
    expected_1 = (2 / 3) * volume[0].astype(np.float64) + (1 / 3) * volume[3]
    expected_2 = (1 / 3) * volume[0].astype(np.float64) + (2 / 3) * volume[3]
    np.testing.assert_allclose(result.data[1], expected_1, rtol=1e-6)
    np.testing.assert_allclose(result.data[2], expected_2, rtol=1e-6)


def test_flow_interpolation_recovers_a_translating_disk_better_than_linear():
    truth = np.stack([_disk_frame(20 + 4 * z) for z in range(5)]).astype(np.uint8)
    errors = {}
    for method in ("linear", "flow"):
        result = drain(run_interpolate(truth, method, missing=(2,)))
        errors[method] = np.abs(result.data[2].astype(float) - truth[2]).mean()
        assert np.array_equal(result.data[[0, 1, 3, 4]], truth[[0, 1, 3, 4]])
    assert errors["flow"] < 0.25 * errors["linear"]
    assert errors["flow"] < 1.0  # grey levels (uint8)


def test_flow_is_computed_once_per_neighbour_pair(monkeypatch):
    calls = []
    original = classical.tvl1_flow

    def counting(a, b, params):
        calls.append(1)
        return original(a, b, params)

    monkeypatch.setattr(classical, "tvl1_flow", counting)
    volume = np.stack([_disk_frame(20 + 3 * z, n=32) for z in range(3)]).astype(np.float32)
    result = drain(run_interpolate(volume, "flow", factor=4))
    assert result.data.shape == (9, 32, 32)
    assert len(calls) == 2
    assert len(result.provenance["extra"]["mean_flow_magnitude_px"]) == 2


def test_factor_mode_places_originals_at_multiples_of_the_factor():
    volume = _random_volume((4, 12, 12), np.int16, seed=5)
    events = []
    result = drain(run_interpolate(volume, factor=3), on_progress=events.append)
    assert result.data.shape == (10, 12, 12)
    for i in range(4):
        assert np.array_equal(result.data[3 * i], volume[i])
    expected = np.rint((2 / 3) * volume[1].astype(float) + (1 / 3) * volume[2]).astype(np.int16)
    np.testing.assert_array_equal(result.data[4], expected)
    assert len(events) == 6 and events[-1].step == events[-1].total == 6
    extra = result.provenance["extra"]
    assert extra["synthesized_indices"] == [1, 2, 4, 5, 7, 8]
    assert extra["kept_output_indices"] == [0, 3, 6, 9]


def test_interpolate_provenance_names_method_and_filled_indices():
    volume = _random_volume((7, 8, 8))
    result = drain(run_interpolate(volume, "linear", missing=(4, 2, 3)))
    record = result.provenance
    assert record["engine"] == "interpolate-linear"
    assert (record["task"], record["method"]) == ("interpolate", "linear")
    assert record["extra"]["synthesized_indices"] == [2, 3, 4]
    assert record["extra"]["neighbour_pairs"] == [[1, 5]]
    assert record["source"] == {"shape": [7, 8, 8], "dtype": "uint16"}
    json.dumps(record)


def test_interpolate_reports_one_progress_event_per_synthesized_slice():
    events = []
    drain(
        run_interpolate(_random_volume(), missing=(1, 3, 4)),
        on_progress=events.append,
    )
    assert [e.step for e in events] == [1, 2, 3]
    assert all(e.total == 3 for e in events)
    assert "linear: slice 1 (1/3)" in events[0].message


def test_interpolate_cancel_raises_and_leaves_input_unchanged():
    volume = _random_volume()
    before = _digest(volume)
    token = CancelToken()
    generator = run_interpolate(volume, missing=(1, 3), cancel=token)
    next(generator)
    token.cancel()
    with pytest.raises(Cancelled):
        next(generator)
    assert _digest(volume) == before


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ((0, 2), r"slice\(s\) \[0\] lie at the volume boundary"),
        ((3, 5), r"slice\(s\) \[5\] lie at the volume boundary"),
        ((2, 6), r"\[6\] out of range"),
        ((0, 1, 2, 3, 4, 5), "every slice"),
    ],
)
def test_interpolate_rejects_unusable_missing_indices(missing, message):
    with pytest.raises(InvalidInputError, match=message):
        drain(run_interpolate(_random_volume(), missing=missing))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"missing": (2, 3, 2)}, r"slice\(s\) \[2\] more than once"),
        ({}, "exactly one"),
        ({"missing": (1,), "factor": 2}, "exactly one"),
        ({"factor": 1}, "factor must be an integer >= 2"),
        ({"missing": ()}, "empty"),
        ({"missing": (1.5,)}, "integer"),
        ({"missing": (-1,)}, "negative"),
    ],
)
def test_slice_plan_rejects_invalid_requests(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        plan_slices(6, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flow_num_iter": 0}, "flow_num_iter"),
        ({"flow_attachment": 0}, "flow_attachment"),
        ({"flow_num_warp": 2.5}, "flow_num_warp must be an integer"),
        ({"flow_tightness": float("nan")}, "finite"),
    ],
)
def test_flow_params_reject_invalid_values(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        FlowParams(**kwargs)


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"missing": [2.7]}, "whole-number"),
        ({"missing": "12"}, "text"),
        ({"missing": [True]}, "whole-number"),
        ({"missing": 5}, r"use \[5\]"),
        ({"missing": [2], "method": "cubic"}, "unknown interpolate method 'cubic'"),
        ({"missing": [2], "flow_num_iter": 3}, "unknown parameter"),
    ],
)
def test_api_rejects_values_it_would_otherwise_coerce(request_kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        drain(run_interpolate(_random_volume(), **request_kwargs))


@pytest.mark.parametrize(
    "volume",
    [np.zeros((1, 8, 8), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((4, 8, 8, 3), np.uint8)],
)
def test_interpolate_rejects_volumes_it_cannot_use(volume):
    with pytest.raises(InvalidInputError):
        drain(run_interpolate(volume, factor=2))


def test_drop_every_holds_out_interior_slices_only():
    assert drop_every(10, 3) == (1, 4, 7)
    assert drop_every(10, 2) == (1, 3, 5, 7)
    assert drop_every(9, 2) == (1, 3, 5, 7)  # never the last slice (8)
    assert drop_every(12, 4, offset=2) == (2, 6, 10)
    for n in range(3, 15):
        for every in range(2, 5):
            held_out = drop_every(n, every)
            assert 0 not in held_out and n - 1 not in held_out
            assert all(b - a == every for a, b in pairwise(held_out))


def test_drop_every_output_feeds_interpolation_directly():
    volume = _random_volume((9, 8, 8))
    result = drain(run_interpolate(volume, missing=drop_every(9, 2)))
    assert result.provenance["extra"]["synthesized_indices"] == [1, 3, 5, 7]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((2, 2), {}, "n_slices"),
        ((10, 1), {}, "every"),
        ((10, 2), {"offset": 0}, "offset"),
        ((4, 3), {"offset": 3}, "no interior slice"),
    ],
)
def test_drop_every_rejects_bad_arguments(args, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        drop_every(*args, **kwargs)


def test_keep_every_rebuilds_the_slices_between_kept_ones():
    assert keep_every(10, 4) == (1, 2, 3, 5, 6, 7)
    assert keep_every(9, 4) == (1, 2, 3, 5, 6, 7)
    assert keep_every(9, 2, offset=1) == (2, 4, 6)
    plan = plan_slices(10, missing=keep_every(10, 4))
    assert [(gap.below, gap.above) for gap in plan.gaps] == [(0, 4), (4, 8)]
    with pytest.raises(InvalidInputError, match="fewer than two kept"):
        keep_every(4, 4)


def test_factor_mode_reports_the_new_z_voxel_size():
    result = api.interpolate(_random_volume((3, 8, 8)), factor=4)
    assert result.voxel_scale == (0.25, 1.0, 1.0)
    assert result.output_voxel_size((2.0, 1.0, 1.0)) == (0.5, 1.0, 1.0)
