"""A whole-volume run whose cluster cannot start (issue 21, finding 11): a script without
``if __name__ == "__main__"`` makes Dask's worker processes fail ("Nanny failed to
start"); the dock then says what to do and leaves no all-zero layer behind."""

from __future__ import annotations

import pytest

from napari_scigen._qt._interpolate_widget import InterpolateWidget
from napari_scigen.workflows import batch


def test_a_cluster_that_cannot_start_is_explained_and_leaves_no_empty_layer(
    rock_viewer, nothreads, monkeypatch, tmp_path
):
    pytest.importorskip("zarr", minversion="3")
    viewer, _ = rock_viewer

    def nanny_fails(job, *, options=None, retries=None, cancel=None):
        raise RuntimeError("Nanny failed to start.")
        yield  # a generator, like the real job

    monkeypatch.setattr(batch, "batch_job", nanny_fails)
    monkeypatch.setattr(batch, "check_cluster_available", lambda options: None)
    monkeypatch.setattr(
        "napari_scigen._qt._batch.default_output", lambda layer, method: tmp_path / "out.zarr"
    )
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.missing.value = "3"
    names = [layer.name for layer in viewer.layers]
    widget.whole_volume_button.click()
    assert 'if __name__ == "__main__":' in widget.status.text(), widget.status.text()
    assert [layer.name for layer in viewer.layers] == names
    assert widget.whole_volume_button.isEnabled()
