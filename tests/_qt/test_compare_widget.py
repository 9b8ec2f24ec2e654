"""The compare-engines dock widget runs the comparison through the workflow and shows the table."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_scigen._qt import _offload  # noqa: E402
from napari_scigen._qt._compare_widget import CompareWidget  # noqa: E402
from napari_scigen.core.phantoms import make_rock_volume  # noqa: E402
from napari_scigen.core.progress import drain  # noqa: E402


@pytest.fixture
def viewer(make_napari_viewer, monkeypatch):
    monkeypatch.setenv("NAPARI_SCIGEN_NOTHREADS", "1")
    viewer = make_napari_viewer()
    viewer.add_image(make_rock_volume((8, 64, 64), seed=1).volume, name="rock")
    return viewer


def test_compare_widget_fills_the_table_writes_the_report_and_adds_layers(viewer, tmp_path):
    widget = CompareWidget(viewer)
    widget.volume_picker.value = "rock"
    for key, box in widget.engine_boxes.items():
        box.value = key in ("inpaint/biharmonic", "interpolate/linear", "inpaint/controlnet")
    widget.n_slices.value = 2
    widget.device.value = "cpu"
    widget.out_dir.value = str(tmp_path)
    widget.run()
    assert widget.last_error is None, widget.last_error
    table = widget.table
    rows = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    assert rows == ["inpaint/biharmonic", "interpolate/linear", "inpaint/controlnet"]
    assert " ± " in table.item(0, 0).text()  # SSIM of biharmonic
    assert table.item(2, 0).text().startswith("skipped:")
    assert "1 skipped" in widget.status.text()
    assert (tmp_path / "compare.md").is_file() and (tmp_path / "compare.png").is_file()
    real = viewer.layers["compare real"].data
    biharmonic = viewer.layers["compare inpaint/biharmonic"].data
    assert real.shape == biharmonic.shape == (2, 64, 64)
    assert not np.array_equal(real, biharmonic)


def test_compare_widget_refuses_to_run_without_an_engine(viewer):
    widget = CompareWidget(viewer)
    widget.volume_picker.value = "rock"
    for box in widget.engine_boxes.values():
        box.value = False
    assert widget.run() is None
    assert "tick at least one engine" in widget.status.text()


def test_a_comparison_of_classical_engines_runs_outside_the_gui_process(
    make_napari_viewer, qtbot, monkeypatch
):
    # threads on (no NAPARI_SCIGEN_NOTHREADS); biharmonic is made unusable in this (the
    # GUI's) process: the dock still fills its table, so the comparison ran in a child
    from napari_scigen.engines.inpainting import biharmonic

    def not_here(*args, **kwargs):
        raise AssertionError("biharmonic ran in the GUI process")

    monkeypatch.delenv("NAPARI_SCIGEN_NOTHREADS", raising=False)
    monkeypatch.setattr(biharmonic, "run_biharmonic", not_here)
    viewer = make_napari_viewer()
    viewer.add_image(make_rock_volume((8, 64, 64), seed=1).volume, name="rock")
    widget = CompareWidget(viewer)
    widget.volume_picker.value = "rock"
    for key, box in widget.engine_boxes.items():
        box.value = key in ("inpaint/biharmonic", "interpolate/linear")
    widget.n_slices.value = 2
    widget.device.value = "cpu"
    job = widget.run()
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "done", widget.status.text()
    rows = [widget.table.verticalHeaderItem(r).text() for r in range(widget.table.rowCount())]
    assert rows == ["inpaint/biharmonic", "interpolate/linear"]
    assert " ± " in widget.table.item(0, 0).text()
    assert viewer.layers["compare inpaint/biharmonic"].data.shape == (2, 64, 64)


def test_a_comparison_with_a_non_classical_engine_stays_in_process(monkeypatch):
    monkeypatch.delenv("NAPARI_SCIGEN_NOTHREADS", raising=False)
    volume = make_rock_volume((8, 64, 64), seed=1).volume

    def no_child(*args, **kwargs):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(_offload, "job_in_subprocess", no_child)
    result = drain(
        _offload.compare_job(
            None,
            volume,
            engines=["interpolate/linear", "inpaint/controlnet"],
            n_slices=2,
            device="cpu",
        )
    )
    assert list(result.images) == ["interpolate/linear"]
    assert "inpaint/controlnet" in result.provenance["extra"]["skipped_engines"]


def test_the_compare_dock_offers_the_compare_command_s_declared_settings(viewer):
    from napari_scigen.core.params import field_spec
    from napari_scigen.workflows.settings import CompareParams

    widget = CompareWidget(viewer)
    for name in ("n_slices", "prompt", "edit_prompt", "train_steps", "device"):
        spec = field_spec(CompareParams, name)
        field = getattr(widget, name)
        assert field.value == (spec.default if spec.default is not None else "")
        assert spec.help[1:] in field.tooltip and spec.flag in field.tooltip
    assert {"auto", "cpu", "cuda", "mps"} <= set(widget.device.choices)  # a choice, not text
    assert widget.n_slices.min == field_spec(CompareParams, "n_slices").info.min
