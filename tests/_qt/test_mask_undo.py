"""Mask edits are undoable (issue 21, finding 1): after Grow, Shrink, threshold, rings or
copy-to-slices, Ctrl+Z restores the previous mask exactly, and the brush stroke painted
before stays undoable below it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen._qt._mask_widget import MaskWidget


@pytest.fixture
def painted(rock_viewer):
    """The Mask painting dock on the rock with one brush stroke on slice 5 of its mask."""
    viewer, image = rock_viewer
    widget = MaskWidget(viewer)
    widget.image_picker.value = "rock"
    mask = widget.create_mask()
    mask.brush_size = 9
    viewer.dims.set_point(0, 5 * image.scale[0])
    for x in range(30, 60, 3):  # one stroke: one undo step, as napari's brush records it
        mask._begin_stroke()
        mask.paint((5, 40, x), 1)
    mask._commit_stroke()
    stroke = np.array(mask.data, copy=True)
    assert 0 < np.count_nonzero(stroke) == np.count_nonzero(stroke[5])
    return viewer, widget, mask, stroke


def _press(widget, button: str) -> None:
    getattr(widget, button).clicked.emit()


@pytest.mark.parametrize(
    ("button", "setup"),
    [
        ("grow_button", {}),
        ("shrink_button", {}),
        ("threshold_button", {"low": 0.0, "high": 0.5}),
        ("rings_button", {}),
        ("copy_button", {"copy_start": 0, "copy_stop": 11}),
    ],
)
def test_undo_after_a_mask_tool_restores_the_painted_stroke_exactly(painted, button, setup):
    viewer, widget, mask, stroke = painted
    for field, value in setup.items():
        getattr(widget, field).value = value
    if button == "threshold_button":
        high = float(np.percentile(viewer.layers["rock"].data, 30))
        widget.high.value = high
    _press(widget, button)
    assert "Error" not in widget.status.text(), widget.status.text()
    edited = np.array(mask.data, copy=True)
    assert not np.array_equal(edited, stroke), f"{button} changed nothing"
    mask.undo()  # what Ctrl+Z does on the selected Labels layer
    np.testing.assert_array_equal(mask.data, stroke)
    mask.redo()
    np.testing.assert_array_equal(mask.data, edited)
    mask.undo()
    mask.undo()  # the brush stroke itself
    assert np.count_nonzero(mask.data) == 0


def test_grow_keeps_other_labels_and_undoes_in_one_step(painted):
    _, widget, mask, stroke = painted
    mask.data_setitem(np.nonzero(stroke == 1)[:1] + np.nonzero(stroke == 1)[1:], 3)
    labelled = np.array(mask.data, copy=True)
    _press(widget, "grow_button")
    assert set(np.unique(mask.data)) == {0, 1, 3}
    assert np.array_equal(mask.data[labelled == 3], labelled[labelled == 3])
    mask.undo()
    np.testing.assert_array_equal(mask.data, labelled)
