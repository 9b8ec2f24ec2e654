"""Progress and Cancel that can be trusted (issue 21, finding 3): one time-left figure in
the bar, the status line and napari's activity dock; the engine's own figure for a phase
(training with a time limit) instead of a pace guess; never rising within a phase; a short
activity description; Cancel that ends the job within 2 s even during a model load, and
as *cancelled*, not as an error."""

from __future__ import annotations

import time

import pytest
from qtpy.QtWidgets import QProgressBar

from napari_scigen._qt._interpolate_widget import InterpolateWidget
from napari_scigen._qt._progress import ACTIVITY_CHARS, JobProgress
from napari_scigen.core.progress import Progress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def shown(qtbot):
    bar = QProgressBar()
    qtbot.addWidget(bar)
    clock = _Clock()
    progress = JobProgress(bar, "Slice interpolation (learned)", lambda: None, clock=clock)
    yield progress, bar, clock
    progress.close(done=False)


def test_one_time_left_figure_the_engines_own_for_a_time_limited_training(shown):
    progress, bar, clock = shown
    # 60 s training limit of 100 000 steps: after 12 s, 57 steps = 0.04 % of the job;
    # elapsed / fraction would say about 8 h, the engine knows 48 s are left
    clock.now = 12.0
    message = "learned: training 12/60 s (step 57/100000), loss 0.0123, ETA 48 s"
    progress.update(Progress(400, 1_000_000, message))
    assert progress.message == "learned: training 12/60 s (step 57/100000), loss 0.0123"
    assert bar.format() == "0.04 % · training: about 50 s left"
    assert progress.activity.eta_text == "training: about 50 s left"  # not tqdm's guess
    for text in (bar.format(), progress.text):
        assert text.count("left") == 1
    # a short description: the bar, the time left and Cancel fit the activity panel
    assert progress.activity.desc.rstrip(": ") == "Slice interpolation (learned)"
    assert len(progress.activity.desc.rstrip(": ")) <= ACTIVITY_CHARS


def test_time_left_never_rises_within_a_phase_and_restarts_with_the_next(shown):
    progress, _, clock = shown
    shown_left = []
    for step, now in [(10, 1.0), (20, 2.0), (25, 4.0), (27, 8.0), (28, 16.0)]:  # slowing
        clock.now = now
        progress.update(Progress(step, 100, f"flow: slice {step}/100"))
        shown_left.append(progress.remaining)
    assert shown_left == sorted(shown_left, reverse=True)
    clock.now = 17.0
    progress.update(Progress(60, 100, "learned: predicting slab 1/4"))  # a new phase
    assert progress.phase == "learned: predicting slab"
    assert progress.remaining is not None


def _blocking_job(seconds: float, then=None):
    """An engine stuck in one step it cannot leave (a model load) for ``seconds``."""

    def job(spec, cancel):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if then is not None and cancel.cancelled:
                raise then
            time.sleep(0.02)
        yield Progress(1, 1, "loaded")
        return None

    return job


def _widget(rock_viewer, monkeypatch, job):
    viewer, _ = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.missing.value = "3"
    monkeypatch.setattr(widget, "make_job", job)
    return viewer, widget


def test_cancel_during_a_model_load_ends_the_job_within_two_seconds(
    rock_viewer, qtbot, monkeypatch
):
    viewer, widget = _widget(rock_viewer, monkeypatch, _blocking_job(3.0))
    n_layers = len(viewer.layers)
    job = widget.run()
    qtbot.wait(200)
    clicked = time.monotonic()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: job.finished, timeout=2_000)
    assert time.monotonic() - clicked < 2.0
    assert job.outcome == "cancelled" and job.detached
    assert "Cancelled" in widget.status.text() and widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: job.thread_done, timeout=5_000)  # its late return is dropped
    assert len(viewer.layers) == n_layers and job.outcome == "cancelled"


def test_an_error_raised_because_of_cancel_ends_as_cancelled(rock_viewer, qtbot, monkeypatch):
    stopped = OSError("download interrupted")  # what a hub download raises when stopped
    viewer, widget = _widget(rock_viewer, monkeypatch, _blocking_job(10.0, then=stopped))
    errors = []
    monkeypatch.setattr(widget, "show_error", errors.append)
    job = widget.run()
    qtbot.wait(100)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: job.thread_done, timeout=5_000)
    assert job.outcome == "cancelled" and errors == []


def test_cancel_stops_a_learned_training_within_two_seconds(rock_viewer, qtbot):
    pytest.importorskip("torch")
    viewer, _ = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.missing.value = "5"
    widget.methods.method = "learned"
    widget.methods.form.set_values(
        {
            "train_steps": 100_000,
            "validation_slices": 0,
            "in_plane_check_slices": 0,
            "uncertainty": False,
            "batch_size": 4,
            "crop_size": 32,
            "device": "cpu",
            "threads": 1,
        }
    )
    n_layers = len(viewer.layers)
    job = widget.run()
    qtbot.waitUntil(lambda: "step" in widget.status.text(), timeout=60_000)  # training
    clicked = time.monotonic()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: job.finished, timeout=2_000)
    assert job.outcome == "cancelled" and "Cancelled" in widget.status.text()
    # the training itself stopped (not only the dock let it go): its thread ended too
    qtbot.waitUntil(lambda: job.thread_done, timeout=2_000)
    assert time.monotonic() - clicked < 2.0
    assert len(viewer.layers) == n_layers
