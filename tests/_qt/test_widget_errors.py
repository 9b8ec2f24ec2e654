"""An engine error in any dock widget (a RuntimeError such as a missing model, a damaged
checkpoint or CUDA out of memory) reaches the user as a napari notification, resets the
widget, and the next job runs: no widget waits forever (issue 12, item 3).

Each job below fails for real on the worker thread, without weights on the machine.
"""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from napari_scigen.core.models import ModelNotAvailableError
from napari_scigen.core.progress import Progress
from napari_scigen.core.result import EngineResult

pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def no_weights(monkeypatch, tmp_path):
    """Empty weight caches, no hub access: every model-backed job has to fail cleanly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("NAPARI_SCIGEN_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def shown(monkeypatch):
    """The napari notifications the widgets show."""
    messages: list[str] = []
    monkeypatch.setattr("napari.utils.notifications.show_error", messages.append)
    return messages


def _interpolate_widget(viewer):
    from napari_scigen._qt._interpolate_widget import InterpolateWidget

    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.method.value = "linear"
    widget.missing.value = "3"
    return widget


def _a_real_job_runs(widget, qtbot, viewer) -> None:
    job = widget.run()
    assert job is not None, widget.status.text()
    qtbot.waitUntil(lambda: job.finished, timeout=30_000)
    assert job.outcome == "done", widget.status.text()
    assert "rock linear 1" in viewer.layers and widget.run_button.isEnabled()


def _engine_failing_with(error: BaseException):
    def interpolate_job(*args, **kwargs):
        yield Progress(1, 3, "loading the model")
        raise error

    return interpolate_job


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        ModelNotAvailableError("model 'x' is not available offline: run `hf download x`"),
    ],
    ids=["RuntimeError", "ModelNotAvailableError"],
)
def test_an_engine_raising_a_runtime_error_notifies_resets_and_the_next_job_runs(
    rock_viewer, qtbot, shown, error
):
    viewer, _ = rock_viewer
    widget = _interpolate_widget(viewer)
    n_layers = len(viewer.layers)
    with pytest.MonkeyPatch.context() as patch:  # superqt would swallow a RuntimeError
        patch.setattr("napari_scigen._qt._offload.OFFLOADED", frozenset())  # in this process
        patch.setattr("napari_scigen.api.interpolate_job", _engine_failing_with(error))
        job = widget.run()
        qtbot.waitUntil(lambda: job.finished, timeout=30_000)
    assert job.outcome == "error" and job.error is error
    assert shown == [str(error)]  # the napari notification, with the engine's own words
    assert widget.status.text() == f"Error: {error}"
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert len(viewer.layers) == n_layers
    _a_real_job_runs(widget, qtbot, viewer)


def test_cancel_stops_an_engine_that_never_checks_the_token(rock_viewer, qtbot, shown):
    def endless(*args, **kwargs):  # e.g. stuck reporting "loading Stable Diffusion"
        step = 0
        while True:
            step += 1
            yield Progress(step, 0, "loading Stable Diffusion")
            time.sleep(0.005)

    viewer, _ = rock_viewer
    widget = _interpolate_widget(viewer)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("napari_scigen._qt._offload.OFFLOADED", frozenset())  # in this process
        patch.setattr("napari_scigen.api.interpolate_job", endless)
        job = widget.run()
        qtbot.waitUntil(lambda: "loading Stable Diffusion" in widget.status.text(), timeout=30_000)
        widget.cancel_button.click()
        qtbot.waitUntil(lambda: job.finished, timeout=30_000)
    assert job.outcome == "cancelled" and not shown
    assert widget.status.text().startswith("Cancelled")
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    _a_real_job_runs(widget, qtbot, viewer)


def _fails_then_runs_again(widget, qtbot, shown, monkeypatch, fragment: str) -> None:
    """Run the widget's real job (it must fail with ``fragment``), then a good one."""
    job = widget.run()
    assert job is not None, widget.status.text()
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "error", widget.status.text()
    assert fragment in shown[-1] and fragment in widget.status.text()
    assert not shown[-1].startswith(type(widget).__name__)  # no Python class name prefix
    assert not shown[-1].startswith(type(job.error).__name__)
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()

    results = []

    def good_job(spec, cancel):
        yield Progress(1, 1, "working")
        return EngineResult(data=np.zeros((4, 4), np.float32), provenance={})

    monkeypatch.setattr(widget, "make_job", good_job)
    monkeypatch.setattr(widget, "on_result", lambda spec, result: results.append(result))
    job = widget.run()
    qtbot.waitUntil(lambda: job.finished, timeout=30_000)
    assert job.outcome == "done" and len(results) == 1
    assert widget.run_button.isEnabled()


@pytest.mark.parametrize(
    ("module", "widget_class", "prompt_field"),
    [
        ("_diffedit_widget", "DiffEditWidget", "prompt"),
        ("_controlnet_widget", "ControlNetWidget", "prompt"),
    ],
)
def test_stable_diffusion_widgets_without_weights_report_and_reset(
    rock_viewer, qtbot, shown, monkeypatch, module, widget_class, prompt_field
):
    import importlib

    viewer, _ = rock_viewer
    widget = getattr(importlib.import_module(f"napari_scigen._qt.{module}"), widget_class)(viewer)
    widget.image_picker.value = "rock"
    widget.fields["model"].value = "nobody/absent-sd-model"
    widget.fields["local_files_only"].value = True
    widget.fields[prompt_field].value = "a pore"
    widget.fields["device"].value = "cpu"
    _fails_then_runs_again(widget, qtbot, shown, monkeypatch, "is not available offline")


@pytest.mark.parametrize(("metric", "fragment"), [("lpips", "LPIPS"), ("fid", "Inception")])
def test_metrics_with_only_a_weight_backed_metric_reports_and_resets(
    rock_viewer, qtbot, shown, monkeypatch, metric, fragment
):
    from napari_scigen._qt._metrics_widget import MetricsWidget

    viewer, reference = rock_viewer
    viewer.add_image(np.asarray(reference.data).copy(), name="copy", scale=reference.scale)
    widget = MetricsWidget(viewer)
    widget.reference_picker.value, widget.generated_picker.value = "rock", "copy"
    for name, box in widget.metric_boxes.items():
        box.value = name == metric
    widget.device.value = "cpu"
    _fails_then_runs_again(widget, qtbot, shown, monkeypatch, fragment)


def test_stylegan_sampling_a_damaged_generator_reports_and_resets(
    make_napari_viewer, qtbot, shown, monkeypatch, tmp_path
):
    from napari_scigen._qt._stylegan_widget import StyleGANWidget
    from napari_scigen.engines.stylegan.checkpoint import read_metadata
    from napari_scigen.metrics.weights import embedded_stylegan_files

    embedded = embedded_stylegan_files()[0]
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(pickle.dumps({"not": "tensors"}))  # a pickle renamed .safetensors
    damaged.with_suffix(".json").write_text(embedded.with_suffix(".json").read_text())
    assert read_metadata(damaged)["config"]
    viewer = make_napari_viewer()
    widget = StyleGANWidget(viewer)
    widget.tabs.setCurrentIndex(1)
    assert widget.action == "sample"
    widget.generator.value = str(damaged)
    widget.device.value = "cpu"
    _fails_then_runs_again(widget, qtbot, shown, monkeypatch, "not a valid safetensors file")
