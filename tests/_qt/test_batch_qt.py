"""``_qt._batch``: a whole-volume run from napari fills a lazy zarr layer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("distributed")
pytest.importorskip("napari")

from napari_scigen import api  # noqa: E402
from napari_scigen.core.phantoms import make_rock_volume  # noqa: E402


@pytest.mark.parametrize("threaded", [True, False], ids=["thread-worker", "synchronous"])
def test_run_on_whole_volume_adds_a_lazy_layer_that_fills_in(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, threaded
):
    from napari_scigen._qt._batch import run_on_whole_volume

    if not threaded:
        monkeypatch.setenv("NAPARI_SCIGEN_NOTHREADS", "1")  # the job runs to the end right here
    volume = make_rock_volume(shape=(10, 64, 64), seed=4).volume
    viewer = make_napari_viewer()
    layer = viewer.add_image(volume, name="rock", scale=(4.0, 2.0, 2.0))
    events, finished = [], []
    run = run_on_whole_volume(
        viewer,
        layer,
        task="interpolate",
        method="linear",
        factor=2,
        output=tmp_path / "rock.linear.ome.zarr",
        workers=1,
        chunk_slices=4,
        on_progress=events.append,
        on_finished=finished.append,
    )
    assert run.layer in viewer.layers  # at once, before any chunk landed
    qtbot.waitUntil(lambda: run.finished, timeout=120_000)
    assert run.runner.outcome == "done" and finished == [run]
    assert run.layer.name == "rock whole volume linear"
    assert type(run.layer.data).__module__.startswith("zarr")  # read from the store
    assert tuple(run.layer.scale) == pytest.approx((2.0, 2.0, 2.0))
    assert len(events) == 1 + run.summary.n_chunks  # the cluster, then one per chunk
    reference = api.interpolate(volume, factor=2, method="linear").data
    np.testing.assert_array_equal(np.asarray(run.layer.data), reference)
    assert run.layer.metadata["provenance"]["extra"]["complete"] is True
    assert (tmp_path / ".input.rock.ome.zarr").is_dir()  # the in-memory layer, for the workers


def test_a_job_s_uncertainty_image_is_shown_over_its_store_and_replaced_on_a_rerun(
    make_napari_viewer, tmp_path
):
    # the image a learned engine writes into the store (workflows._batch_worker), here
    # written directly: training one would take longer than this test may
    from napari_scigen._qt._batch import show_uncertainty
    from napari_scigen.core.io import write_volume, write_zarr
    from napari_scigen.workflows._batch_worker import uncertainty_store
    from napari_scigen.workflows.batch import BatchRequest, plan_batch, prepare_store

    volume = np.zeros((5, 16, 16), np.uint8)
    source = write_volume(tmp_path / "v.tif", volume)
    output = str(tmp_path / "o.ome.zarr")
    job = prepare_store(
        plan_batch(BatchRequest("interpolate", "linear", str(source), output, factor=2))
    )
    viewer = make_napari_viewer()
    layer = viewer.add_image(volume, name="v", scale=(4.0, 1.0, 1.0))
    assert show_uncertainty(viewer, job, layer, "learned") is None  # none written
    spread = np.zeros((9, 16, 16), np.float32)
    spread[1::2] = np.linspace(0.0, 2.0, 16, dtype=np.float32)
    write_zarr(uncertainty_store(job.store), spread, levels=1)
    shown = show_uncertainty(viewer, job, layer, "learned")
    assert shown.name == "v whole volume learned uncertainty"
    assert tuple(shown.scale) == pytest.approx((2.0, 1.0, 1.0))  # z / factor, as the output
    assert shown.colormap.name == "magma" and shown.contrast_limits[1] > 1.9
    np.testing.assert_array_equal(np.asarray(shown.data), spread)
    again = show_uncertainty(viewer, job, layer, "learned")  # a rerun: one layer, not two
    assert [lyr.name for lyr in viewer.layers] == ["v", again.name]


def test_run_on_whole_volume_runs_with_the_batch_declaration_s_settings(
    make_napari_viewer, tmp_path, monkeypatch
):
    from napari_scigen._qt import _batch
    from napari_scigen.workflows import batch
    from napari_scigen.workflows.settings import BatchParams

    asked = {}

    def recorded(job, *, options, retries, cancel):
        asked.update(job=job, options=options, retries=retries)
        raise RuntimeError("recorded")  # stop here: nothing to compute
        yield

    monkeypatch.setattr(batch, "batch_job", recorded)
    monkeypatch.setenv("NAPARI_SCIGEN_NOTHREADS", "1")
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((4, 16, 16), np.uint8), name="v")
    errors = []
    settings = BatchParams(retries=0, levels=2, chunk_slices=2)
    _batch.run_on_whole_volume(
        viewer, layer, task="interpolate", method="linear", factor=2,
        output=tmp_path / "v.ome.zarr", settings=settings, workers=1, on_error=errors.append,
    )  # fmt: skip
    assert [str(e) for e in errors] == ["recorded"]
    assert (asked["retries"], asked["job"].request.levels) == (0, 2)
    assert (asked["options"].workers, asked["job"].request.chunk_slices) == (1, 2)
    assert asked["options"].dashboard == ":8787"  # given settings are used as they are
    _batch.run_on_whole_volume(
        viewer, layer, task="interpolate", method="linear", factor=2,
        output=tmp_path / "v2.ome.zarr", on_error=errors.append,
    )  # fmt: skip
    defaults = BatchParams()
    assert asked["retries"] == defaults.retries and asked["options"].dashboard is None
    assert asked["job"].request.levels == defaults.levels


def test_a_rerun_with_other_settings_writes_the_next_default_store_and_keeps_the_first(
    make_napari_viewer, tmp_path, monkeypatch
):
    from napari_scigen._qt import _batch
    from napari_scigen.workflows import batch

    def recorded(job, *, options, retries, cancel):
        raise RuntimeError("recorded")  # stop here: nothing to compute
        yield

    monkeypatch.setattr(batch, "batch_job", recorded)
    monkeypatch.setenv("NAPARI_SCIGEN_NOTHREADS", "1")
    monkeypatch.setattr(_batch, "default_output", lambda layer, method: tmp_path / "v.lin.ome.zarr")
    import tifffile

    tifffile.imwrite(tmp_path / "v.tif", np.zeros((4, 16, 16), np.uint8), photometric="minisblack")
    viewer = make_napari_viewer()  # a layer read lazily from its file: the workers read it
    data = tifffile.memmap(tmp_path / "v.tif")
    layer = viewer.add_image(data, name="v", metadata={"source": str(tmp_path / "v.tif")})

    def run(factor):
        return _batch.run_on_whole_volume(
            viewer, layer, task="interpolate", method="linear", factor=factor, workers=1,
            on_error=lambda error: None,
        ).job.store  # fmt: skip

    first = run(2)
    assert first == tmp_path / "v.lin.ome.zarr"
    assert run(2) == first  # the same job: resumed in its store
    assert run(3) == tmp_path / "v.lin.2.ome.zarr"  # another job: the next free name
    assert run(2) == first and run(3) == tmp_path / "v.lin.2.ome.zarr"
    assert sorted(p.name for p in tmp_path.glob("v.lin*")) == ["v.lin.2.ome.zarr", "v.lin.ome.zarr"]
