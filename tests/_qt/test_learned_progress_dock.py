"""The learned fill's voxel rate and time left reach the dock and napari's activity dock."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QProgressBar

from napari_scigen.core.phantoms import make_rock_volume

pytest.importorskip("torch")


def test_the_learned_fill_shows_its_voxel_rate_and_its_own_time_left(qtbot):
    from napari_scigen import api
    from napari_scigen._qt._progress import JobProgress

    events = []
    volume = make_rock_volume(
        shape=(12, 32, 32), seed=1, grain_radius_range=(2, 6), n_bad_detectors=2
    ).volume
    params = {
        "init": "scratch", "train_steps": 2, "crop_size": 16, "batch_size": 2,
        "base_channels": 8, "threads": 1, "device": "cpu", "force_learned": True,
        "validation_slices": 2,
    }  # fmt: skip
    api.interpolate(volume, method="learned", factor=2, on_progress=events.append, **params)
    # the fill's events before the job's end (at the end no time is left to show)
    fill = [e for e in events if "Mvoxel/s" in e.message and e.fraction < 1]
    assert fill
    bar = QProgressBar()
    qtbot.addWidget(bar)
    progress = JobProgress(bar, "Slice interpolation (learned)", lambda: None)
    try:
        for event in events:
            progress.update(event)
            if event in fill:
                # the rate stays in the status line; the engine's own figure is the time
                # left shown by the bar and by the activity dock (not a pace guess)
                assert "Mvoxel/s" in progress.message and "s left" not in progress.message
                assert progress.phase_stated and progress.activity.eta_text.endswith("left")
                assert progress.activity.eta_text in bar.format()
    finally:
        progress.close(done=True)
