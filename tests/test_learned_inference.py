"""Streaming, tiled inference of the learned engines (issue 19): tiny CPU checks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_scigen.core.progress import Progress  # noqa: E402
from napari_scigen.engines.learned import inference, tiles  # noqa: E402
from napari_scigen.engines.learned.inpaint import _predict  # noqa: E402
from napari_scigen.engines.learned.networks import UNetConfig, build_network  # noqa: E402

#: Tiled vs whole-plane: oneDNN's float32 sums depend on the batch and the image width, so
#: results agree to rounding (measured max |diff| 1.2e-7 in network units), not bit for bit.
TOLERANCE = 2e-6


def _network(in_channels: int = 2, seed: int = 1):
    """A small random network whose far pixels matter (weights x2, a non-zero head)."""
    network = build_network(UNetConfig(in_channels, 4), seed=seed).eval()
    with torch.no_grad():
        for name, weight in network.named_parameters():
            if weight.ndim == 4 and not name.startswith("head"):
                weight.mul_(2.0)
    torch.nn.init.normal_(network.head.weight, std=0.2, generator=torch.Generator().manual_seed(2))
    return network


def _volume():
    rng = np.random.default_rng(0)
    volume = rng.random((9, 5, 140), dtype=np.float32)
    known = np.zeros(9, bool)
    known[::2] = True
    return volume, known, np.flatnonzero(~known)


def _drain(job):
    messages = []
    try:
        while True:
            messages.append(next(job).message)
    except StopIteration as stop:
        return stop.value, messages


def _predict_rows(network, volume, known, rows, **options):
    return _drain(
        inference.predict_rows(
            network,
            volume,
            known,
            rows,
            orientations=("xz", "yz"),
            tta=4,
            device="cpu",
            progress=lambda f, m: Progress(int(100 * f), 100, m),
            label="test",
            **options,
        )
    )


def test_receptive_radius_matches_the_gradient_support_of_the_network():
    network = _network(in_channels=1)
    reach = 0
    for y, x in ((60, 60), (61, 63), (62, 61)):
        image = torch.zeros(1, 1, 128, 128, requires_grad=True)
        network(image)[0, 0, y, x].backward()
        rows, cols = torch.nonzero(image.grad[0, 0], as_tuple=True)
        reach = max(reach, int((rows - y).abs().max()), int((cols - x).abs().max()))
    assert reach == tiles.receptive_radius() == 42
    assert tiles.HALO == 44 and tiles.HALO % tiles.ALIGN == 0


def test_tiled_prediction_equals_the_whole_plane_prediction():
    network = _network()
    volume, known, rows = _volume()
    whole, _ = _predict_rows(network, volume, known, rows)
    tiled, _ = _predict_rows(network, volume, known, rows, tile=(8, 32), batch_pixels=2000)
    assert np.abs(tiled.mean - whole.mean).max() < TOLERANCE
    assert np.abs(tiled.spread - whole.spread).max() < TOLERANCE
    assert whole.spread.max() > 0.01  # planes and flips disagree: the spread is not trivial


def test_a_halo_shorter_than_the_receptive_field_changes_the_result(monkeypatch):
    network = _network()
    volume, known, rows = _volume()
    whole, _ = _predict_rows(network, volume, known, rows)
    monkeypatch.setattr(inference, "HALO", 8)
    short, _ = _predict_rows(network, volume, known, rows, tile=(8, 32))
    assert np.abs(short.mean - whole.mean).max() > 100 * TOLERANCE


def test_out_arrays_and_slab_callback_receive_the_same_result(monkeypatch):
    network = _network()
    volume, known, rows = _volume()
    reference, _ = _predict_rows(network, volume, known, rows)
    shape = (rows.size, *volume.shape[1:])
    out = (np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32))
    prediction, _ = _predict_rows(network, volume, known, rows, out=out)
    assert prediction.mean is out[0] and prediction.spread is out[1]
    np.testing.assert_array_equal(out[0], reference.mean)
    np.testing.assert_array_equal(out[1], reference.spread)

    class Sink:
        """A target that only takes slice assignment (like a zarr array)."""

        def __init__(self):
            self.data = np.full(shape, np.nan, np.float32)

        def __setitem__(self, key, value):
            self.data[key] = value

        def __getitem__(self, key):
            return self.data[key]

    monkeypatch.setattr(inference, "SLAB_BYTES", 8 * volume.shape[1] * volume.shape[2])
    slabs = []
    sinks = (Sink(), Sink())
    _predict_rows(
        network, volume, known, rows, out=sinks, on_slab=lambda r, m, s: slabs.append(r.tolist())
    )
    assert slabs == [[int(r)] for r in rows]  # one row per slab: bounded accumulators
    np.testing.assert_array_equal(sinks[0].data, reference.mean)
    np.testing.assert_array_equal(sinks[1].data, reference.spread)
    np.testing.assert_array_equal(reference.take(rows[1:2])[0], reference.mean[1:2])


def test_prediction_matches_the_previous_float64_fusion():
    network = _network()
    volume, known, rows = _volume()
    prediction, messages = _predict_rows(network, volume, known, rows)
    from napari_scigen.engines.learned.geometry import linear_fill

    filled = linear_fill(volume, known)
    mask = known.astype(np.float32)[None, :, None]
    values = []
    with torch.no_grad():
        for planes in (filled.transpose(1, 0, 2), filled.transpose(2, 0, 1)):
            batch = np.stack([planes, np.broadcast_to(mask, planes.shape)], axis=1)
            batch = torch.from_numpy(np.ascontiguousarray(batch))
            for flip_z, flip_x in inference.FLIPS:
                dims = [d for d, on in ((2, flip_z), (3, flip_x)) if on]
                x = batch.flip(dims) if dims else batch
                residual = network(x)
                residual = residual.flip(dims) if dims else residual
                values.append((batch[:, 0] + residual[:, 0])[:, rows].numpy())
    stacked = [v.transpose(1, 0, 2) for v in values[:4]] + [
        v.transpose(1, 2, 0) for v in values[4:]
    ]
    stacked = np.stack(stacked).astype(np.float64)
    assert np.abs(prediction.mean - stacked.mean(axis=0)).max() < TOLERANCE
    assert np.abs(prediction.spread - stacked.std(axis=0)).max() < TOLERANCE
    assert any("Mvoxel/s" in m for m in messages)


class _RunsOutOfMemory:
    """A network that raises the device's out-of-memory error on large inputs."""

    def __init__(self, network, limit: int, error):
        self.network, self.limit, self.error, self.failures = network, limit, error, 0

    def __call__(self, x):
        if x.shape[0] * x.shape[-2] * x.shape[-1] > self.limit:
            self.failures += 1
            raise self.error
        return self.network(x)


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
    ids=["OutOfMemoryError", "RuntimeError"],
)
def test_out_of_memory_retries_with_smaller_batches(error):
    network = _network()
    volume, known, rows = _volume()
    reference, _ = _predict_rows(network, volume, known, rows)
    failing = _RunsOutOfMemory(network, limit=5000, error=error)
    prediction, messages = _predict_rows(failing, volume, known, rows, batch_pixels=12_000)
    assert failing.failures > 0
    assert any("out of memory on cpu: retrying" in m for m in messages)
    assert np.abs(prediction.mean - reference.mean).max() < TOLERANCE


def test_out_of_memory_at_the_smallest_batch_on_the_cpu_is_a_clear_error():
    network = _RunsOutOfMemory(_network(), limit=0, error=RuntimeError("CUDA out of memory"))
    volume, known, rows = _volume()
    with pytest.raises(MemoryError, match="out of memory even for"):
        _predict_rows(network, volume, known, rows, batch_pixels=tiles.MIN_BATCH_PIXELS * 2)


def test_other_errors_of_the_network_are_not_retried():
    network = _RunsOutOfMemory(_network(), limit=0, error=ValueError("broken"))
    volume, known, rows = _volume()
    with pytest.raises(ValueError, match="broken"):
        _predict_rows(network, volume, known, rows)
    assert network.failures == 1


def test_inpainting_prediction_is_the_same_in_tiles_and_survives_out_of_memory():
    from napari_scigen.engines.learned.context import channel_count

    rng = np.random.default_rng(3)
    volume = rng.random((3, 120, 200), dtype=np.float32)
    unknown = np.zeros(volume.shape, bool)
    unknown[1, 40:80, 50:150] = True  # one box of 104 x 164 pixels with its margin
    network = _network(in_channels=channel_count(0))

    def run(net, **options):
        return _drain(
            _predict(
                net,
                volume,
                unknown,
                unknown,
                0,
                4,
                "cpu",
                lambda f, m: Progress(int(100 * f), 100, m),
                "test",
                None,
                **options,
            )  # fmt: skip
        )

    (mean, spread), _ = run(network)
    (tiled_mean, tiled_spread), messages = run(network, batch_pixels=16_384)
    assert np.abs(tiled_mean - mean).max() < TOLERANCE
    assert np.abs(tiled_spread - spread).max() < TOLERANCE
    assert (mean[~unknown] == 0).all() and (spread[unknown] > 0).any()
    assert any("voxel/s" in m for m in messages)
    failing = _RunsOutOfMemory(network, limit=16_500, error=RuntimeError("CUDA out of memory"))
    (oom_mean, _), messages = run(failing, batch_pixels=32_768)
    assert failing.failures > 0 and any("retrying" in m for m in messages)
    assert np.abs(oom_mean - mean).max() < TOLERANCE


def test_bfloat16_precision_on_the_cpu_stays_close_to_float32():
    network = _network()
    volume, known, rows = _volume()
    exact, _ = _predict_rows(network, volume, known, rows)
    fast, _ = _predict_rows(network, volume, known, rows, precision="bfloat16")
    difference = np.abs(fast.mean - exact.mean).max()
    assert TOLERANCE < difference < 0.05  # bfloat16 rounding, not float32's


def test_a_grid_converted_from_the_input_as_tiles_read_it_predicts_the_same_bits():
    from napari_scigen.engines.interpolation.plan import plan_slices
    from napari_scigen.engines.learned.geometry import KnownRows, make_grid

    rng = np.random.default_rng(3)
    slices = rng.integers(200, 60000, (5, 6, 70), dtype=np.uint16)
    plan = plan_slices(5, missing=None, factor=2)
    dense = make_grid(slices, plan)
    targets = dict(plan.kept)
    lazy = KnownRows(slices, targets, plan.n_out, dense.low, dense.high)
    assert lazy.shape == dense.volume.shape
    rows = np.array([0, 3, 3, 4, 8, 5])  # known and unknown rows, repeated, unordered
    assert np.array_equal(lazy[rows, 1:4, 2:60], dense.volume[rows, 1:4, 2:60])
    assert np.array_equal(lazy[2:7, 5, :], dense.volume[2:7, 5, :])
    assert np.array_equal(lazy[4], dense.volume[4]) and not lazy[1].any()
    network = _network()
    synthesized = np.array(plan.synthesized)
    whole, _ = _predict_rows(network, dense.volume, dense.known, synthesized)
    lazily, _ = _predict_rows(network, lazy, dense.known, synthesized)
    assert np.array_equal(lazily.mean, whole.mean)
    assert np.array_equal(lazily.spread, whole.spread)


def test_a_grid_converted_as_read_reads_each_input_slice_once_per_read_and_refuses_masks():
    from napari_scigen.engines.learned.geometry import KnownRows

    class Counted:
        def __init__(self, data):
            self.data, self.shape, self.rows = data, data.shape, []

        def __getitem__(self, key):
            self.rows.append(np.asarray(key[0]).tolist())
            return self.data[key]

    slices = Counted(np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))
    lazy = KnownRows(slices, {0: 0, 1: 2, 2: 4}, 5, 0.0, 255.0)
    values = lazy[np.array([0, 0, 1, 2, 2, 4]), :, :]
    assert slices.rows == [[0, 1, 2]]  # every slice once, unknown row 1 not read
    assert values.shape == (6, 4, 5) and not values[2].any()
    assert np.array_equal(values[3], slices.data[1].astype(np.float32) * np.float32(1 / 255))
    for key in (np.array([True, False, True, False, True]), (Ellipsis, 0), (0, np.array([1]))):
        with pytest.raises(TypeError):
            lazy[key]
    with pytest.raises(TypeError, match="index it"):
        np.asarray(lazy)


def test_the_cpu_threads_are_spent_on_calls_side_by_side_and_a_gpu_takes_one_at_a_time():
    assert inference.concurrent_calls("cpu", 1) == (1, 1)
    assert inference.concurrent_calls("cpu", 2) == (2, 1)
    assert inference.concurrent_calls("cpu", 3) == (3, 1)
    assert inference.concurrent_calls("cpu", 16) == (inference.MAX_CONCURRENT_CALLS, 4)
    assert inference.concurrent_calls("cuda:0", 16) == (1, 0)


def _calls(monkeypatch, calls: int) -> None:
    monkeypatch.setattr(inference, "concurrent_calls", lambda device, threads=None: (calls, 1))


def test_tiles_run_side_by_side_give_the_bits_of_tiles_run_in_turn(monkeypatch):
    import threading

    network = _network()
    volume, known, rows = _volume()
    _calls(monkeypatch, 1)
    in_turn, _ = _predict_rows(network, volume, known, rows, batch_pixels=2000)
    # the first two calls wait for each other: a run that made them in turn would time out
    meeting = threading.Barrier(2, timeout=20)
    names, real_apply = [], inference.apply

    def apply_meeting_once(*args, **kwargs):
        names.append(threading.current_thread().name)
        if len(names) <= 2:
            meeting.wait()
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(inference, "apply", apply_meeting_once)
    _calls(monkeypatch, 3)
    threads_before = torch.get_num_threads()
    side_by_side, _ = _predict_rows(
        network, volume, known, rows, batch_pixels=2000, concurrent_tiles=True
    )
    assert torch.get_num_threads() == threads_before  # restored after the run
    assert len(set(names[:2])) == 2 and all(n.startswith("scigen-tiles") for n in names)
    assert np.array_equal(side_by_side.mean, in_turn.mean)
    assert np.array_equal(side_by_side.spread, in_turn.spread)


def test_an_error_in_a_call_side_by_side_stops_the_run_and_restores_the_threads(monkeypatch):
    import time

    class SlowlyBroken(_RunsOutOfMemory):
        def __call__(self, x):
            time.sleep(0.1)
            return super().__call__(x)

    _calls(monkeypatch, 2)
    network = SlowlyBroken(_network(), limit=0, error=ValueError("broken"))
    volume, known, rows = _volume()
    threads_before = torch.get_num_threads()
    with pytest.raises(ValueError, match="broken"):
        _predict_rows(network, volume, known, rows, batch_pixels=2000, concurrent_tiles=True)
    assert torch.get_num_threads() == threads_before
    failures = network.failures
    time.sleep(0.5)
    assert network.failures == failures  # no call goes on once the error is raised


def test_out_of_memory_side_by_side_retries_with_smaller_batches(monkeypatch):
    _calls(monkeypatch, 2)
    network = _network()
    volume, known, rows = _volume()
    reference, _ = _predict_rows(network, volume, known, rows)
    failing = _RunsOutOfMemory(network, limit=5000, error=RuntimeError("CUDA out of memory"))
    prediction, messages = _predict_rows(
        failing, volume, known, rows, batch_pixels=12_000, concurrent_tiles=True
    )
    assert failing.failures > 0 and any("retrying" in m for m in messages)
    assert np.abs(prediction.mean - reference.mean).max() < TOLERANCE


def test_tiles_run_one_at_a_time_on_the_calling_thread_unless_asked_otherwise(monkeypatch):
    import threading

    _calls(monkeypatch, 3)  # threads to spare: still one call at a time by default
    names, real_apply = [], inference.apply

    def recording_apply(*args, **kwargs):
        names.append(threading.current_thread().name)
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(inference, "apply", recording_apply)
    volume, known, rows = _volume()
    _predict_rows(_network(), volume, known, rows, batch_pixels=2000)
    assert names and set(names) == {threading.current_thread().name}
