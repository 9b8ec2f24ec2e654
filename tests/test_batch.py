"""Batch jobs on a Dask cluster: chunked == single-process, resume, killed workers, errors."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from napari_scigen import api  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume  # noqa: E402
from napari_scigen.core.phantoms import make_rock_volume  # noqa: E402
from napari_scigen.core.progress import Cancelled, CancelToken  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.engines.registry import engine_names  # noqa: E402
from napari_scigen.workflows.batch import (  # noqa: E402
    BatchRequest,
    chunk_attempts,
    done_chunks,
    plan_batch,
    run_batch,
)


@pytest.fixture(scope="module")
def client():
    """The cluster the issue asks for: 2 worker processes, 1 thread each."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as started,
    ):
        yield started


@pytest.fixture(scope="module")
def rock(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    volume = make_rock_volume(shape=(24, 64, 64), seed=5).volume
    path = write_volume(folder / "rock.ome.zarr", volume, voxel_size=(2.0, 1.0, 1.0))
    return volume, path


def _batch(request: BatchRequest, client, **kwargs):
    summary = run_batch(request, client=client, **kwargs)
    return summary, read_volume(request.output)


ODD = tuple(range(1, 23, 2))


@pytest.mark.parametrize(
    ("method", "geometry"),
    [
        ("linear", {"missing": ODD}),
        ("linear", {"factor": 3}),
        ("flow", {"missing": (3, 4, 5, 9, 10, 16)}),
        ("flow", {"factor": 2}),
    ],
)
def test_interpolation_batch_equals_single_process_bit_for_bit(
    client, rock, tmp_path, method, geometry
):
    volume, path = rock
    out = tmp_path / "out.ome.zarr"
    request = BatchRequest("interpolate", method, str(path), str(out), chunk_slices=4, **geometry)
    summary, result = _batch(request, client)
    reference = api.interpolate(volume, method=method, **geometry)
    assert summary.complete and summary.computed == summary.n_chunks > 2
    np.testing.assert_array_equal(result.data, reference.data)
    assert result.voxel_size == pytest.approx(reference.output_voxel_size((2.0, 1.0, 1.0)))
    assert result.provenance["engine"] == f"batch-interpolate-{method}"
    assert result.provenance["extra"]["complete"] is True


def test_biharmonic_batch_equals_single_process_with_a_2d_and_a_3d_mask(client, rock, tmp_path):
    volume, path = rock
    mask = np.zeros(volume.shape, np.uint8)
    mask[:, 20:34, 10:44] = 1
    mask[8:12] = 0  # a chunk with nothing to fill is copied
    mask_path = write_volume(tmp_path / "mask.ome.zarr", mask, kind="labels")
    out = tmp_path / "filled.ome.zarr"
    request = BatchRequest(
        "inpaint", "biharmonic", str(path), str(out), mask=str(mask_path), chunk_slices=4
    )
    summary, result = _batch(request, client)
    reference = api.inpaint(volume, mask, method="biharmonic")
    assert summary.complete
    np.testing.assert_array_equal(result.data, reference.data)
    assert result.provenance["extra"]["value_range_carried"] is True

    flat = write_volume(tmp_path / "mask2d.tif", mask[0], kind="labels")
    request = BatchRequest(
        "inpaint",
        "biharmonic",
        str(path),
        str(tmp_path / "filled2d.ome.zarr"),
        mask=str(flat),
        slices=(1, 2, 3, 17),
    )
    _, result = _batch(request, client)
    reference = api.inpaint(volume, mask[0], method="biharmonic", slices=[1, 2, 3, 17])
    np.testing.assert_array_equal(result.data, reference.data)


@pytest.mark.skipif(
    "learned" not in engine_names("interpolate"), reason="the learned engine is not registered"
)
def test_a_learned_engine_is_trained_once_and_its_chunks_equal_one_process(client, rock, tmp_path):
    # one task over the whole volume by default (one process); with
    # --chunk-slices the network is trained once on one worker, shipped as safetensors,
    # and every chunk applies it: within one grey level of one process (float32 rounding
    # of differently shaped tiles)
    volume, path = rock
    params = {
        "train_steps": 2, "batch_size": 2, "crop_size": 16, "seed": 3, "threads": 1,
        "uncertainty": False, "force_learned": True, "base_channels": 8, "init": "scratch",
        "tta": 2,
    }  # fmt: skip
    request = BatchRequest(
        "interpolate", "learned", str(path), str(tmp_path / "one.ome.zarr"), params=params,
        missing=ODD,
    )  # fmt: skip
    job = plan_batch(request)
    assert len(job.chunks) == 1 and not job.fit_once and job.note is None
    reference = api.interpolate(volume, method="learned", missing=ODD, **params)
    split = replace(request, output=str(tmp_path / "split.ome.zarr"), chunk_slices=8)
    job = plan_batch(split)
    assert len(job.chunks) == 3 and job.fit_once and "trained once" in job.note
    summary, chunked = _batch(split, client)
    assert summary.computed == 3 and len(summary.workers) >= 1
    model = tmp_path / "split.ome.zarr" / ".napari_scigen_batch" / "model"
    assert sorted(p.name for p in model.iterdir()) == ["learned.json", "learned.safetensors"]
    record = json.loads((model / "learned.json").read_text())
    assert record["format"] and record["fitted"]["extra"]["fit_threads"] == 1  # threads=1 wins
    difference = np.abs(chunked.data.astype(int) - reference.data.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    assert chunked.provenance["extra"]["chunking_note"] == job.note
    assert chunked.provenance["extra"]["fitted"]["filled_with"] == "learned"
    auto_params = {k: v for k, v in params.items() if k != "force_learned"}
    auto = plan_batch(replace(split, method="auto", params=auto_params))
    assert not auto.fit_once and "depends on the chunking" in auto.note


@pytest.mark.skipif(
    "learned" not in engine_names("inpaint"), reason="the learned engine is not registered"
)
def test_learned_inpainting_trained_once_gives_chunks_bit_identical_to_one_process(
    client, rock, tmp_path
):
    volume, path = rock
    mask = np.zeros(volume.shape, np.uint8)
    mask[1:23, 20:30, 24:36] = 1
    mask_path = write_volume(tmp_path / "mask.ome.zarr", mask, kind="labels")
    params = {
        "train_steps": 2, "batch_size": 2, "crop_size": 16, "seed": 4, "threads": 1,
        "uncertainty": False, "force_learned": True, "base_channels": 8, "init": "scratch",
    }  # fmt: skip
    request = BatchRequest(
        "inpaint", "learned", str(path), str(tmp_path / "filled.ome.zarr"), params=params,
        mask=str(mask_path), chunk_slices=8,
    )  # fmt: skip
    job = plan_batch(request)
    assert job.fit_once and job.halo == 16 and len(job.chunks) == 3
    summary, chunked = _batch(request, client)
    reference = api.inpaint(volume, mask.astype(bool), method="learned", **params)
    assert summary.computed == 3
    np.testing.assert_array_equal(chunked.data, reference.data)


def test_every_engine_says_whether_z_chunks_change_its_result():
    from napari_scigen.engines.registry import engines

    flags = {(e.task, e.name): (e.chunk_invariant, e.halo) for e in engines()}
    assert flags[("interpolate", "linear")] == (True, 1)
    assert flags[("interpolate", "learned")] == (True, 48)
    assert flags[("inpaint", "learned")] == (True, 16)
    assert flags[("inpaint", "biharmonic")] == (True, 0)
    # window, self-validation and projection seeds come from the volume it is given
    assert flags[("interpolate", "stylegan")][0] is False
    assert flags[("interpolate", "auto")][0] is False
    assert not any(e.chunk_invariant for e in engines() if not e.deterministic and
                   e.name != "learned")  # fmt: skip


def test_a_job_of_an_engine_that_is_not_chunk_invariant_warns_in_one_line(rock, tmp_path):
    pytest.importorskip("torch")
    _, path = rock
    request = BatchRequest(
        "interpolate", "stylegan", str(path), str(tmp_path / "s.ome.zarr"), factor=2,
        chunk_slices=16,
    )  # fmt: skip
    note = plan_batch(request).note
    assert note.startswith("warning:") and "not chunk-invariant" in note and "\n" not in note


def _wait_until_idle(client, timeout: float = 30.0) -> None:
    """Wait until no task runs on the cluster (cancelled chunks have ended either way)."""
    deadline = time.monotonic() + timeout
    while any(client.processing().values()):
        assert time.monotonic() < deadline, "the cluster is still busy after cancelling"
        time.sleep(0.05)


def test_an_interrupted_job_resumes_without_recomputing_done_chunks(client, rock, tmp_path):
    volume, path = rock
    out = tmp_path / "resume.ome.zarr"
    request = BatchRequest("interpolate", "flow", str(path), str(out), missing=ODD, chunk_slices=2)
    token = CancelToken()

    def stop_after_three(event):
        if event.step >= 3:
            token.cancel()

    with pytest.raises(Cancelled):
        run_batch(request, client=client, cancel=token, on_progress=stop_after_three)
    _wait_until_idle(client)  # chunks that were running finish (or not): either is fine
    before = done_chunks(out)
    assert 3 <= len(before) < 12
    summary, result = _batch(request, client)
    assert summary.skipped >= len(before) and summary.complete
    attempts = chunk_attempts(out)
    assert all(attempts[index] == 1 for index in before)  # done chunks never ran again
    assert sum(attempts.values()) <= 12 + 2  # at most the chunks in flight ran twice
    np.testing.assert_array_equal(
        result.data, api.interpolate(volume, missing=ODD, method="flow").data
    )


def test_a_failing_chunk_is_retried_reported_and_recomputed_alone_on_rerun(client, rock, tmp_path):
    from napari_scigen.workflows.batch import BatchIncompleteError

    def break_chunk(index):  # runs in each worker process (pickled by value)
        from napari_scigen.workflows import _batch_worker as worker

        original = worker.__dict__.setdefault("_unbroken_run_engine", worker._run_engine)

        def run_engine(job, chunk):
            if chunk.index == index:
                raise RuntimeError(f"injected failure in chunk {index}")
            return original(job, chunk)

        worker._run_engine = original if index is None else run_engine

    volume, path = rock
    out = tmp_path / "failing.ome.zarr"
    request = BatchRequest(
        "interpolate", "linear", str(path), str(out), missing=ODD, chunk_slices=4
    )
    client.run(break_chunk, 2)
    try:
        with pytest.raises(BatchIncompleteError, match="chunk 2: RuntimeError: injected") as error:
            run_batch(request, client=client, retries=2)
    finally:
        client.run(break_chunk, None)
    assert error.value.summary.computed == 5 and set(error.value.summary.failed) == {2}
    assert done_chunks(out) == {0, 1, 3, 4, 5} and chunk_attempts(out)[2] == 3  # 1 + 2 retries
    summary, result = _batch(request, client)
    assert (summary.computed, summary.skipped) == (1, 5) and summary.complete
    np.testing.assert_array_equal(result.data, api.interpolate(volume, missing=ODD).data)


def test_a_rerun_with_other_settings_or_a_foreign_store_is_refused(client, rock, tmp_path):
    volume, path = rock
    out = tmp_path / "job.ome.zarr"
    request = BatchRequest("interpolate", "linear", str(path), str(out), missing=ODD)
    _batch(request, client)
    other = BatchRequest("interpolate", "linear", str(path), str(out), missing=(1, 3))
    with pytest.raises(InvalidInputError, match=r"other settings \(missing\)"):
        run_batch(other, client=client)
    summary, _ = _batch(other, client, overwrite=True)
    assert summary.computed == summary.n_chunks
    foreign = write_volume(tmp_path / "foreign.ome.zarr", volume)
    with pytest.raises(InvalidInputError, match="not a batch output"):
        run_batch(
            BatchRequest("interpolate", "linear", str(path), str(foreign), factor=2), client=client
        )


@pytest.mark.parametrize("by", ["address", "scheduler file"])
def test_attaching_to_a_running_scheduler(client, rock, tmp_path, by):
    from napari_scigen.workflows.batch import ClusterOptions

    volume, path = rock
    where = client.scheduler.address
    if by == "scheduler file":
        # what ``dask scheduler --scheduler-file`` writes (the client reads its address);
        # Client.write_scheduler_file fails once workers report metrics with tuple keys
        where = str(tmp_path / "scheduler.json")
        (tmp_path / "scheduler.json").write_text(json.dumps({"address": client.scheduler.address}))
    out = tmp_path / "attached.ome.zarr"
    request = BatchRequest("interpolate", "linear", str(path), str(out), factor=2)
    summary = run_batch(request, options=ClusterOptions("scheduler", scheduler=where))
    assert summary.complete and summary.cluster.startswith("scheduler ")
    assert summary.dashboard.startswith("http") and summary.dashboard.endswith("/status")
    np.testing.assert_array_equal(read_volume(out).data, api.interpolate(volume, factor=2).data)
    assert client.status == "running"  # the cluster outlives the job that attached to it


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "train", "method": "stylegan"}, "does not map a volume"),
        ({"output": "out.tif"}, "name it \\*.ome.zarr"),
        ({"mask": "MASK"}, "has shape \\(3, 8, 8\\) but the input has \\(24, 64, 64\\)"),
        ({"method": "nope"}, "unknown inpaint method 'nope'"),
        ({"params": {"tile_size": 1}}, "tile_size"),
    ],
)
def test_bad_requests_give_clear_one_line_errors(rock, tmp_path, change, message):
    _, path = rock
    wrong_mask = write_volume(tmp_path / "wrong.tif", np.ones((3, 8, 8), np.uint8), kind="labels")
    fields = {
        "task": "inpaint",
        "method": "biharmonic",
        "input": str(path),
        "output": str(tmp_path / "o.ome.zarr"),
        "mask": str(wrong_mask) if change.get("mask") else str(path),
    }
    fields.update({k: v for k, v in change.items() if k != "mask"})
    with pytest.raises(InvalidInputError, match=message) as error:
        plan_batch(BatchRequest(**fields))
    assert "\n" not in str(error.value)


def test_a_killed_worker_loses_only_its_chunk(client, rock, tmp_path):
    volume, path = rock
    out = tmp_path / "killed.ome.zarr"
    missing = tuple(range(1, 23))  # one long gap: every chunk computes a flow
    request = BatchRequest(
        "interpolate", "flow", str(path), str(out), missing=missing, chunk_slices=1
    )
    victim = next(iter(client.run(os.getpid).values()))
    seen: dict[str, set[int]] = {}

    def kill_when_some_are_done():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(done_chunks(out)) < 3:
            time.sleep(0.01)
        seen["before"] = done_chunks(out)
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_some_are_done)
    killer.start()
    summary, result = _batch(request, client)
    killer.join()
    assert summary.complete and len(done_chunks(out)) == summary.n_chunks == 24
    assert victim not in client.run(os.getpid).values()  # it died; its nanny started another
    attempts = chunk_attempts(out)
    assert all(attempts[index] == 1 for index in seen["before"])
    assert sum(attempts.values()) <= summary.n_chunks + 1  # only the victim's chunk again
    reference = api.interpolate(volume, missing=missing, method="flow")
    np.testing.assert_array_equal(result.data, reference.data)


def _tiny_learned_split(path, output, *, train_steps: int) -> BatchRequest:
    """A learned interpolation of the rock's odd slices in 3 chunks, trained once (tiny)."""
    params = {
        "train_steps": train_steps, "batch_size": 2, "crop_size": 16, "seed": 3,
        "uncertainty": False, "force_learned": True, "base_channels": 8, "init": "scratch",
        "tta": 1,
    }  # fmt: skip
    return BatchRequest(
        "interpolate", "learned", str(path), str(output), params=params, missing=ODD,
        chunk_slices=8,
    )  # fmt: skip


@pytest.mark.skipif(
    "learned" not in engine_names("interpolate"), reason="the learned engine is not registered"
)
def test_the_once_only_fit_uses_the_cores_of_the_workers_waiting_for_it(rock, tmp_path):
    from napari_scigen.workflows._batch_cluster import ClusterOptions, available_cores

    _, path = rock
    request = _tiny_learned_split(path, tmp_path / "split.ome.zarr", train_steps=2)
    messages = []
    options = ClusterOptions("local", workers=2, threads=1, dashboard=None)
    summary = run_batch(
        request, options=options, on_progress=lambda event: messages.append(event.message)
    )
    assert summary.computed == 3
    model = tmp_path / "split.ome.zarr" / ".napari_scigen_batch" / "model" / "learned.json"
    used = min(2, available_cores())  # 2 workers x 1 thread, at most this machine's cores
    assert json.loads(model.read_text())["fitted"]["extra"]["fit_threads"] == used
    assert any("once on one worker with 2 thread(s)" in m for m in messages)
    assert read_volume(request.output).provenance["extra"]["fitted"]["fit_threads"] == used


@pytest.mark.skipif(
    "learned" not in engine_names("interpolate"), reason="the learned engine is not registered"
)
def test_the_once_only_fit_leaves_its_workers_heap_to_the_chunks_that_follow(
    rock, tmp_path, monkeypatch
):
    # a worker whose heap was trimmed (malloc_trim) after the fit then took 3.7 million
    # minor page faults a minute through its next chunk: 160 s where an untrimmed one took 144
    from napari_scigen.core import memory
    from napari_scigen.workflows._batch_worker import fit_model
    from napari_scigen.workflows.batch import prepare_store

    _, path = rock
    trims = []

    def glibc_trim():  # stands for ctypes' malloc_trim: trim(pad) records the call
        return trims.append

    monkeypatch.setattr(memory, "_trim", glibc_trim)
    request = _tiny_learned_split(path, tmp_path / "fit.ome.zarr", train_steps=1)
    job = prepare_store(plan_batch(request))
    assert job.fit_once
    outcome = fit_model(job, threads=1)
    assert outcome["status"] == "trained" and trims == []
    memory.release_free_memory()  # the patched trim does record a call
    assert trims == [0]
