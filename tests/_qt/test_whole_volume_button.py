"""*Run on the whole volume* in the engine docks: the chosen method and its inputs go to
:func:`napari_scigen._qt._batch.run_on_whole_volume`, whose store layer fills in."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_scigen import api
from napari_scigen._qt import _batch
from napari_scigen._qt._inpaint_widget import InpaintWidget
from napari_scigen._qt._interpolate_widget import InterpolateWidget


def test_whole_volume_interpolation_fills_a_store_layer(rock_viewer, qtbot, tmp_path, monkeypatch):
    pytest.importorskip("zarr", minversion="3")
    pytest.importorskip("distributed")
    viewer, image = rock_viewer
    real = _batch.run_on_whole_volume

    def one_worker(*args, **kwargs):
        return real(*args, output=tmp_path / "rock.zarr", workers=1, chunk_slices=6, **kwargs)

    monkeypatch.setattr(_batch, "run_on_whole_volume", one_worker)
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.missing.value = "3, 7"
    assert widget.whole_volume_button.toolTip()
    widget.whole_volume_button.click()
    run = widget.whole_volume_run
    assert run.layer.name == "rock whole volume linear"
    assert not widget.whole_volume_button.isEnabled() and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: widget.whole_volume_button.isEnabled(), timeout=120_000)
    assert run.runner.outcome == "done", widget.status.text()
    assert widget.status.text().startswith("Done: the whole volume is in")
    assert viewer.layers.selection.active is run.layer and widget.progress is None
    expected = api.interpolate(np.asarray(image.data), missing=[3, 7], method="linear").data
    np.testing.assert_array_equal(np.asarray(run.layer.data), expected)


def test_whole_volume_inpainting_passes_the_mask_and_slices_and_warns_when_chunks_differ(
    rock_viewer, monkeypatch
):
    viewer, image = rock_viewer
    mask = np.zeros(image.data.shape, np.uint8)
    mask[4, 30:50, 30:50] = 1
    viewer.add_labels(mask, name="rock mask")
    calls, warnings = [], []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warnings.append)

    def record(viewer_, layer, **kwargs):
        calls.append((layer, kwargs))
        store = viewer_.add_image(np.zeros(layer.data.shape), name="store")
        runner = SimpleNamespace(outcome="cancelled", finished=True)
        return SimpleNamespace(
            layer=store, finished=True, runner=runner, job=SimpleNamespace(store="s")
        )

    monkeypatch.setattr(_batch, "run_on_whole_volume", record)
    widget = InpaintWidget(viewer)
    widget.slices.value = "2-5"
    widget.whole_volume_button.click()
    ((layer, kwargs),) = calls
    assert layer is image and kwargs["task"] == "inpaint" and kwargs["method"] == "biharmonic"
    assert kwargs["mask_layer"] is viewer.layers["rock mask"]
    assert tuple(kwargs["slices"]) == (2, 3, 4, 5) and warnings == []
    assert "Cancelled; the finished chunks stay in s" in widget.status.text()
    assert widget.whole_volume_button.isEnabled()

    widget.method.value = "learned"  # trains per chunk
    widget.whole_volume_button.click()
    assert len(calls) == 2 and "not deterministic" in warnings[-1]

    viewer.layers.remove("rock mask")  # no mask: the form error, nothing started
    widget.whole_volume_button.click()
    assert len(calls) == 2 and "choose a mask" in widget.status.text()
