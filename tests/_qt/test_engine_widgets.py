"""Engine widgets are built from the registry and the params declarations, and run through
the same API route as the CLI; an engine error never leaves a widget stuck."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen._qt._inpaint_widget import InpaintWidget
from napari_scigen._qt._interpolate_widget import InterpolateWidget
from napari_scigen.cli import main
from napari_scigen.core.io import read_volume, write_volume
from napari_scigen.core.progress import Progress
from napari_scigen.engines.registry import engine_names


@pytest.mark.parametrize(
    ("widget_class", "task"), [(InterpolateWidget, "interpolate"), (InpaintWidget, "inpaint")]
)
def test_every_registered_engine_is_a_widget_choice_with_its_declared_fields(
    rock_viewer, widget_class, task
):
    viewer, _ = rock_viewer
    widget = widget_class(viewer)
    assert list(widget.method.choices) == list(engine_names(task))
    for name, form in widget.methods.forms.items():
        widget.method.value = name
        assert form.native.isVisibleTo(widget) and all(
            not other.native.isVisibleTo(widget)
            for key, other in widget.methods.forms.items()
            if key != name
        )
        for field, control in form.widgets.items():
            assert control.tooltip and "CLI: --" in control.tooltip, (name, field)


def test_widget_and_cli_record_the_same_parameters(rock_viewer, nothreads, tmp_path):
    viewer, image = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.method.value = "flow"
    widget.methods.form["flow_num_iter"].value = 4
    widget.methods.form["flow_attachment"].value = 9.5
    widget.missing.value = "3, 7"
    widget.run()
    from_widget = viewer.layers["rock flow 1"].metadata["provenance"]

    write_volume(tmp_path / "rock.tif", np.asarray(image.data), voxel_size=(5.0, 2.5, 2.5))
    out = tmp_path / "flow.tif"
    argv = ["interpolate", str(tmp_path / "rock.tif"), "--missing", "3,7", "--method", "flow"]
    assert (
        main([*argv, "--flow-num-iter", "4", "--flow-attachment", "9.5", "-o", str(out), "-q"]) == 0
    )
    from_cli = read_volume(out)
    assert from_widget["params"] == from_cli.provenance["params"]
    assert (from_widget["task"], from_widget["method"]) == ("interpolate", "flow")
    np.testing.assert_array_equal(viewer.layers["rock flow 1"].data, from_cli.data)


def test_an_invalid_form_value_is_shown_without_starting_a_job(rock_viewer, nothreads):
    viewer, _ = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.method.value = "linear"
    widget.missing.value = "3, x"
    n_layers = len(viewer.layers)
    assert widget.run() is None
    assert "cannot read slice index 'x'" in widget.status.text()
    assert len(viewer.layers) == n_layers and widget.run_button.isEnabled()


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory"), _Boom("weights missing")])
def test_an_engine_raising_runtime_error_shows_a_message_and_the_widget_runs_again(
    rock_viewer, qtbot, monkeypatch, error
):
    from napari_scigen.core.models import ModelNotAvailableError

    viewer, _ = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.missing.value = "3"
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    original = widget.make_job

    def failing_with(raised):
        def failing(spec, cancel):
            yield Progress(0, 1, "loading model")
            raise raised

        return failing

    for raised in (error, ModelNotAvailableError("model 'x' is not available offline")):
        monkeypatch.setattr(widget, "make_job", failing_with(raised))
        job = widget.run()
        qtbot.waitUntil(lambda job=job: job.finished, timeout=30_000)
        assert job.outcome == "error"
        assert str(raised) in widget.status.text() and str(raised) in shown[-1]
        assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    monkeypatch.setattr(widget, "make_job", original)
    job = widget.run()
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "done"
