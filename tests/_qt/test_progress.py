"""Long jobs with a word (issue 13, defect 6): percent and time left in the dock, the job in
napari's activity dock (with a Cancel that works), and engines that say what they do."""

from __future__ import annotations

import time

import numpy as np
import pytest
from napari.utils import progress as napari_progress
from qtpy.QtWidgets import QProgressBar

from napari_scigen._qt._interpolate_widget import InterpolateWidget
from napari_scigen._qt._progress import (
    BAR_STEPS,
    JobProgress,
    format_progress,
    format_remaining,
    remaining_seconds,
)
from napari_scigen.core.progress import Progress, check_cancelled


def test_time_left_is_elapsed_over_fraction_in_words():
    assert remaining_seconds(30.0, 0.25) == 90.0
    assert remaining_seconds(30.0, 0.0) is None and remaining_seconds(30.0, 1.0) is None
    assert format_remaining(7) == "a few seconds left"
    assert format_remaining(66 * 60) == "about 1 h 6 min left"
    assert format_progress(0.034, 720) == "3.4 % · about 12 min left"


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bar_follows_the_overall_fraction_of_a_long_job(qtbot):
    """StyleGAN interpolation: 12 400 projection steps; the bar and the time left move."""
    bar = QProgressBar()
    qtbot.addWidget(bar)
    clock = _Clock()
    cancelled = []
    shown = JobProgress(
        bar, "Slice interpolation (stylegan)", lambda: cancelled.append(1), clock=clock
    )
    assert bar.maximum() == 0  # busy until the first event
    clock.now = 40.0
    shown.update(Progress(124, 12_400, "projecting kept slices 31..34: tiles 1-8 of 50"))
    assert bar.maximum() == BAR_STEPS and bar.value() == 10  # 1 %, not 0
    assert bar.format() == "1.0 % · about 1 h 6 min left"
    assert shown.activity in napari_progress._all_instances  # in napari's activity dock
    assert shown.activity.n == 124 and shown.activity.total == 12_400
    assert shown.activity.desc.startswith("Slice interpolation (stylegan)")  # short
    shown.activity.cancel()  # the activity dock's Cancel button
    assert cancelled == [1]
    activity = shown.activity
    shown.close(done=False)
    assert activity not in napari_progress._all_instances and bar.value() == 0


def _slow_job(steps: int, delay: float):
    def job(spec, cancel):
        for step in range(steps):
            check_cancelled(cancel)
            time.sleep(delay)
            yield Progress(step + 1, steps, f"slice {step + 1}/{steps}")
        raise AssertionError("should have been cancelled")

    return job


def test_a_running_job_shows_its_time_left_and_cancels_from_the_activity_dock(
    rock_viewer, qtbot, monkeypatch
):
    viewer, _ = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.missing.value = "3"
    monkeypatch.setattr(widget, "make_job", _slow_job(200, 0.02))
    n_layers = len(viewer.layers)
    job = widget.run()
    qtbot.waitUntil(lambda: widget.progress_bar.value() >= 20, timeout=30_000)
    assert "left" in widget.progress_bar.format() and "left" in widget.status.text()
    activity = widget.progress.activity
    assert activity in napari_progress._all_instances
    assert activity.desc.startswith("Slice interpolation (linear)")
    activity.cancel()
    qtbot.waitUntil(lambda: job.finished, timeout=30_000)
    assert job.outcome == "cancelled" and "Cancelled" in widget.status.text()
    assert activity not in napari_progress._all_instances and len(viewer.layers) == n_layers
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_cancel_reaches_an_engine_that_only_yields(rock_viewer, qtbot, monkeypatch):
    """Cancel is thrown into the engine at its next progress event, so its clean-up runs."""
    viewer, _ = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.missing.value = "3"
    cleaned = []

    def never_checks(spec, cancel):
        try:
            for step in range(10_000):
                time.sleep(0.01)
                yield Progress(step + 1, 10_000, "working")
        except BaseException as error:
            cleaned.append(type(error).__name__)
            raise

    monkeypatch.setattr(widget, "make_job", never_checks)
    job = widget.run()
    qtbot.waitUntil(lambda: widget.progress_bar.value() >= 1, timeout=30_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: job.finished, timeout=30_000)
    assert job.outcome == "cancelled" and cleaned == ["Cancelled"]


def test_flow_says_what_it_does_before_its_first_slice(rock_viewer, nothreads):
    viewer, _ = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.method.value = "flow"
    widget.methods.form["flow_num_iter"].value = 2
    widget.missing.value = "5-6"
    statuses = []
    original = widget.set_status
    widget.set_status = lambda text: (statuses.append(text), original(text))
    widget.run()
    assert statuses[0] == "Starting…" and statuses[-1] == "Done."
    assert statuses[1].startswith("flow: comparing slices 4 and 7 (0/2 rebuilt)")
    assert any(text.startswith("flow: slice 5 (1/2) — 50 %") for text in statuses)


def test_stylegan_interpolation_reports_projection_and_rebuilding_in_words(
    make_napari_viewer, nothreads
):
    pytest.importorskip("torch")
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.integers(0, 60000, (5, 64, 64)).astype(np.uint16), name="vol")
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "vol"
    widget.method.value = "stylegan"
    form = widget.methods.form
    assert {"generator", "projection_steps"} <= set(form.widgets)  # the user's controls
    # no held-out check: the messages of projecting and rebuilding only
    form.set_values({"projection_steps": 3, "device": "cpu", "validation_slices": 0})
    widget.missing.value = "2"
    fractions, statuses = [], []
    original = widget._on_progress

    def record(event):
        original(event)
        fractions.append(widget.progress.fraction)
        statuses.append(widget.status.text())

    widget._on_progress = record
    widget.run()
    assert widget.status.text().startswith("Done. stylegan filled the result"), widget.status.text()
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] == 1.0
    assert statuses[0].startswith("projecting kept slices 1..3: tiles 1-2 of 2, step 1/3")
    assert statuses[-1].startswith("rebuilding slice 2 (1/1)")
    provenance = viewer.layers["vol stylegan 1"].metadata["provenance"]
    assert provenance["params"]["projection_steps"] == 3
    assert provenance["model"].startswith("embedded:")
