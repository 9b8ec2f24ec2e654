"""Layers in the right world (issue 13, defects 3 and 9): the sample's real unit, the image
selected, results in their source's scale/translate/units, and the viewer shows them."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen._napari._sample_data import sample_cache_dir
from napari_scigen._qt._inpaint_widget import InpaintWidget
from napari_scigen._qt._interpolate_widget import InterpolateWidget
from napari_scigen._qt._mask_widget import MaskWidget
from napari_scigen._qt._metrics_widget import MetricsWidget


def _selected_in_layer_list(viewer) -> list[str]:
    view = viewer.window._qt_viewer.layers
    return [view.model().data(index) for index in view.selectionModel().selectedIndexes()]


def test_the_sample_opens_in_micrometres_with_the_image_selected(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    first = viewer.open_sample("napari-scigen", "rock")
    assert [layer.name for layer in first] == [
        "rock microCT (synthetic)",
        "rock phases (ground truth)",
        "rock ring artifacts",
    ]
    # not the hidden ring layer (the last one added), in the model and in the layer list
    qtbot.waitUntil(lambda: viewer.layers.selection.active is first[0], timeout=5_000)
    assert _selected_in_layer_list(viewer) == ["rock microCT (synthetic)"]
    assert all(str(unit) == "micrometer" for layer in first for unit in layer.units)
    assert viewer.layers.extent.units is not None  # one world: no "Inconsistent units"
    assert all(layer.metadata["ground_truth"] for layer in first[1:])
    assert not first[0].metadata.get("ground_truth")
    # simulated once, then read back from the cache: the same bytes, fresh arrays
    assert len(list(sample_cache_dir().glob("rock-*.npz"))) == 1
    again = viewer.open_sample("napari-scigen", "rock")
    qtbot.waitUntil(lambda: viewer.layers.selection.active is again[0], timeout=5_000)
    assert np.array_equal(again[0].data, first[0].data) and again[1].data is not first[1].data
    assert again[1].data.flags.writeable  # the labels can be painted


@pytest.fixture
def world_viewer(make_napari_viewer, small_rock):
    """The small rock in a 2.5 um world, shifted: results must land exactly on it."""
    viewer = make_napari_viewer()
    image = viewer.add_image(
        small_rock.volume.copy(),
        name="rock",
        scale=(5.0, 2.5, 2.5),
        translate=(10.0, 4.0, 6.0),
        units=("um", "um", "um"),
        metadata={"voxel_unit": "um"},
    )
    return viewer, image


def _same_world(layer, image) -> None:
    ndim = layer.ndim
    assert tuple(layer.scale) == tuple(image.scale)[-ndim:], layer.name
    assert tuple(layer.translate) == tuple(image.translate)[-ndim:], layer.name
    assert tuple(layer.units) == tuple(image.units)[-ndim:], layer.name


def test_every_result_layer_is_in_its_sources_world_and_shown(world_viewer, nothreads):
    viewer, image = world_viewer
    mask_widget = MaskWidget(viewer)
    mask_widget.image_picker.value = "rock"
    mask = mask_widget.create_mask()
    data = np.zeros(mask.data.shape, np.uint8)
    data[4, 30:50, 30:50] = 1
    mask.data = data
    mask_widget.show_feather()
    inpaint = InpaintWidget(viewer)
    inpaint.run()
    interpolate = InterpolateWidget(viewer)
    interpolate.image_picker.value = "rock"
    interpolate.missing.value = "3, 6"
    interpolate.run()
    assert interpolate.new_layers[0].name == "rock linear 1"  # "<source> <method> <n>"
    assert viewer.layers.selection.active is interpolate.new_layers[0]  # the new result
    metrics = MetricsWidget(viewer)
    metrics.reference_picker.value, metrics.generated_picker.value = "rock", "rock biharmonic 1"
    metrics.run()
    names = ["rock mask", "rock mask feather", "rock biharmonic 1", "rock linear 1"]
    for layer in [viewer.layers[name] for name in names] + metrics.map_layers:
        _same_world(layer, image)
    assert metrics.map_layers and viewer.layers.extent.units is not None


def test_a_new_stack_outside_the_shown_slice_moves_the_slider_onto_it(world_viewer, nothreads):
    pytest.importorskip("torch")
    from napari_scigen._qt._stylegan_widget import StyleGANWidget

    viewer, image = world_viewer
    viewer.dims.set_point(0, 10.0 + 11 * 5.0)  # the last slice of the 12-slice rock
    widget = StyleGANWidget(viewer)
    widget.device.value = "cpu"
    widget.sample_form.set_values({"count": 2, "seed": 1})
    widget.start("sample")
    samples = viewer.layers["stylegan samples 1"]
    # the volume's scale and units, placed beside it (to its right) from the shown slice
    assert tuple(samples.scale) == tuple(image.scale)
    assert tuple(samples.units) == tuple(image.units)
    width = image.data.shape[-1] * image.scale[-1]
    assert samples.translate[0] == pytest.approx(10.0 + 11 * 5.0)
    assert samples.translate[1] == pytest.approx(image.translate[1])
    assert samples.translate[2] == pytest.approx(image.translate[2] + 1.05 * width)
    assert viewer.layers.selection.active is samples
    assert viewer.dims.point[0] == pytest.approx(samples.translate[0])  # its first slice
    assert widget.status.text() == "Done."
