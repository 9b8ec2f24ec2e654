"""Widget tests for the foundation: sample data, mask painting, inpaint, interpolate, cancel."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from napari_scigen._qt._inpaint_widget import InpaintWidget
from napari_scigen._qt._interpolate_widget import InterpolateWidget
from napari_scigen._qt._mask_widget import MaskWidget


def digest(array) -> str:
    """SHA-256 of an array's bytes (to prove an input layer was not modified)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _paint_disk(mask_layer, z, center, radius):
    data = np.asarray(mask_layer.data).copy()
    yy, xx = np.mgrid[: data.shape[1], : data.shape[2]]
    data[z][(yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2] = 1
    mask_layer.data = data


def test_open_sample_adds_rock_volume_and_ground_truth_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-scigen", "rock")
    kinds = {layer.name: type(layer).__name__ for layer in layers}
    image = next(layer for layer in layers if type(layer).__name__ == "Image")
    assert image.data.dtype == np.uint16 and image.data.ndim == 3
    assert "Labels" in kinds.values()
    assert image.metadata["provenance"]["engine"] == "sample-rock"
    assert all(s > 0 for s in image.scale)


def test_mask_widget_creates_matching_labels_layer_ready_to_paint(rock_viewer):
    viewer, image = rock_viewer
    widget = MaskWidget(viewer)
    widget.image_picker.value = "rock"
    mask = widget.create_mask()
    assert mask.name == "rock mask"
    assert mask.data.shape == image.data.shape
    assert tuple(mask.scale) == tuple(image.scale)
    assert mask.mode == "paint" and mask.selected_label == 1
    assert viewer.layers.selection.active is mask
    # a second click selects the same layer instead of adding another
    assert widget.create_mask() is mask
    assert len([layer for layer in viewer.layers if layer.name.startswith("rock mask")]) == 1


def test_mask_widget_grow_shrink_and_copy_slice_edit_only_the_mask(rock_viewer):
    viewer, image = rock_viewer
    before = digest(image.data)
    widget = MaskWidget(viewer)
    widget.image_picker.value = "rock"
    mask = widget.create_mask()
    _paint_disk(mask, 4, (48, 48), 6)
    painted = int(np.count_nonzero(mask.data))
    widget.radius.value = 2
    widget.grow_button.native.click()
    grown = int(np.count_nonzero(mask.data))
    assert grown > painted
    widget.shrink_button.native.click()
    assert np.count_nonzero(mask.data) < grown
    viewer.dims.set_point(0, 4 * 5.0)  # world z of slice 4 (scale 5)
    widget.copy_start.value, widget.copy_stop.value = 5, 7
    widget.copy_current_slice()
    assert all(np.array_equal(mask.data[z] != 0, mask.data[4] != 0) for z in (5, 6, 7))
    assert not np.asarray(mask.data[8]).any()
    assert digest(image.data) == before


def test_inpaint_widget_adds_result_layer_and_leaves_input_untouched(rock_viewer, nothreads):
    viewer, image = rock_viewer
    before = digest(image.data)
    mask_widget = MaskWidget(viewer)
    mask_widget.image_picker.value = "rock"
    mask = mask_widget.create_mask()
    _paint_disk(mask, 5, (40, 50), 8)
    widget = InpaintWidget(viewer)
    widget.image_picker.value, widget.mask_picker.value = "rock", "rock mask"
    widget.run()
    result = viewer.layers["rock biharmonic 1"]
    assert result.data.dtype == image.data.dtype and result.data.shape == image.data.shape
    outside = np.asarray(mask.data) == 0
    assert np.array_equal(result.data[outside], image.data[outside])
    assert not np.array_equal(result.data[~outside], image.data[~outside])
    assert tuple(result.scale) == tuple(image.scale)
    provenance = result.metadata["provenance"]
    assert provenance["engine"] == "inpaint-biharmonic" and "software" in provenance
    assert digest(image.data) == before
    assert widget.status.text() == "Done."


def test_inpaint_widget_reports_empty_mask_without_adding_layers(rock_viewer, nothreads):
    viewer, _ = rock_viewer
    viewer.add_labels(np.zeros((12, 96, 96), np.uint8), name="rock mask")
    widget = InpaintWidget(viewer)
    widget.image_picker.value, widget.mask_picker.value = "rock", "rock mask"
    n_layers = len(viewer.layers)
    widget.run()
    assert "empty" in widget.status.text()
    assert len(viewer.layers) == n_layers


def test_inpaint_widget_reports_mismatched_mask_shape(rock_viewer, nothreads):
    viewer, _ = rock_viewer
    viewer.add_labels(np.ones((12, 90, 96), np.uint8), name="other mask")
    widget = InpaintWidget(viewer)
    widget.image_picker.value, widget.mask_picker.value = "rock", "other mask"
    widget.run()
    assert "does not match the image shape" in widget.status.text()


def test_interpolate_widget_threaded_rebuilds_missing_slices(rock_viewer, qtbot):
    viewer, image = rock_viewer
    before = digest(image.data)
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.method.value = "linear"
    widget.missing.value = "3, 6-7"
    job = widget.run()
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "done", widget.status.text()
    result = viewer.layers["rock linear 1"]
    kept = [z for z in range(12) if z not in (3, 6, 7)]
    assert np.array_equal(result.data[kept], image.data[kept])
    assert result.metadata["provenance"]["engine"] == "interpolate-linear"
    assert digest(image.data) == before


def test_interpolate_widget_upsampling_shrinks_z_scale(rock_viewer, nothreads):
    viewer, image = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.mode.value = "upsample z"
    widget.factor.value = 2
    widget.run()
    result = viewer.layers["rock linear 1"]
    assert result.data.shape[0] == 2 * 12 - 1
    assert result.scale[0] == pytest.approx(image.scale[0] / 2)
    assert np.array_equal(result.data[::2], image.data)


def test_cancel_stops_running_job_and_adds_no_layer(rock_viewer, qtbot):
    viewer, _ = rock_viewer
    big = np.tile(np.asarray(viewer.layers["rock"].data), (4, 2, 2))  # 48 x 192 x 192
    viewer.add_image(big, name="big")
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "big"
    widget.method.value = "flow"
    widget.missing.value = ",".join(str(z) for z in range(1, 47, 2))
    n_layers = len(viewer.layers)
    job = widget.run()
    qtbot.waitUntil(lambda: widget.progress_bar.value() >= 1, timeout=60_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "cancelled"
    assert len(viewer.layers) == n_layers
    assert "Cancelled" in widget.status.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_screenshot_of_viewer_with_inpainted_result(
    make_napari_viewer, small_rock, nothreads, tmp_path
):
    viewer = make_napari_viewer(show=True)
    image = viewer.add_image(small_rock.volume.copy(), name="rock")
    mask = MaskWidget(viewer)
    mask.image_picker.value = "rock"
    _paint_disk(mask.create_mask(), 6, (48, 48), 12)
    widget = InpaintWidget(viewer)
    widget.image_picker.value, widget.mask_picker.value = "rock", "rock mask"
    widget.run()
    viewer.dims.set_point(0, 6)
    path = tmp_path / "viewer.png"
    shot = viewer.screenshot(str(path), canvas_only=True)
    assert path.exists() and shot.ndim == 3
    assert shot[..., :3].std() > 5, "the screenshot is blank: layers were not drawn"
    assert image.name == "rock"
