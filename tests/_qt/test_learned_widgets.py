"""The learned engines in the Slice interpolation and Inpainting docks (issue 11, item 6):
registry choices with their training budget and uncertainty toggle, the uncertainty map as a
layer in the source's world, progress with the time left, and Cancel."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen._qt._inpaint_widget import InpaintWidget
from napari_scigen._qt._interpolate_widget import InterpolateWidget

pytest.importorskip("torch")

#: A training budget of seconds: a few steps of a tiny network on small crops.
TINY = {
    "train_steps": 3,
    "crop_size": 16,
    "batch_size": 2,
    "tta": 1,
    "init": "scratch",
    "base_channels": 4,
    "device": "cpu",
    "threads": 1,
}


@pytest.fixture
def shifted_rock(rock_viewer):
    viewer, image = rock_viewer
    image.translate = (10.0, 4.0, 6.0)
    return viewer, image


def _same_world(layer, image) -> None:
    assert tuple(layer.scale) == tuple(image.scale) and tuple(layer.translate) == tuple(
        image.translate
    ), layer.name


def test_learned_interpolation_adds_its_uncertainty_in_the_volumes_world(shifted_rock, nothreads):
    viewer, image = shifted_rock
    widget = InterpolateWidget(viewer)
    assert {"learned", "auto"} <= set(widget.method.choices)  # from the registry
    widget.image_picker.value = "rock"
    widget.method.value = "learned"
    form = widget.methods.form
    basic = set(form.basic.asdict())
    assert {"train_steps", "uncertainty", "init", "train_seconds"} <= basic  # budget, toggle
    assert {"train_steps", "uncertainty"} <= set(widget.methods.forms["auto"].basic.asdict())
    # three training steps may lose the self-check: keep the network's result regardless
    form.set_values({**TINY, "validation_slices": 0, "force_learned": True})
    widget.missing.value = "3, 6"
    statuses = []
    original = widget.set_status
    widget.set_status = lambda text: (statuses.append(text), original(text))
    widget.run()
    assert widget.status.text().startswith("Done."), widget.status.text()
    assert any("left" in text for text in statuses)  # progress with the time left
    result, uncertainty = viewer.layers["rock learned 1"], viewer.layers["rock learned uncertainty"]
    assert widget.new_layers == [result, uncertainty]
    assert viewer.layers.selection.active is result
    for layer in (result, uncertainty):
        _same_world(layer, image)
    spread = np.asarray(uncertainty.data)
    assert spread.shape == image.data.shape and (spread >= 0).all()
    assert not spread[[0, 1, 2, 4, 5, 7]].any()  # kept slices are certain
    assert uncertainty.colormap.name == "magma" and uncertainty.blending == "additive"
    params = result.metadata["provenance"]["params"]
    assert params["train_steps"] == 3 and tuple(params["voxel_size"]) == (5.0, 2.5, 2.5)

    form["uncertainty"].value = False  # the toggle: no map
    widget.run()
    assert "rock learned 2" in viewer.layers and widget.new_layers == [
        viewer.layers["rock learned 2"]
    ]


def test_learned_inpainting_adds_its_uncertainty_and_keeps_unmasked_pixels(shifted_rock, nothreads):
    viewer, image = shifted_rock
    mask = np.zeros(image.data.shape, np.uint8)
    mask[4, 30:50, 30:50] = 1
    viewer.add_labels(mask, name="rock mask", scale=image.scale, translate=image.translate)
    widget = InpaintWidget(viewer)
    assert "learned" in widget.method.choices
    widget.method.value = "learned"
    widget.methods.form.set_values(
        {**TINY, "validation_masks": 0, "context_slices": 1, "force_learned": True}
    )
    widget.run()
    assert widget.status.text().startswith("Done."), widget.status.text()
    result = viewer.layers["rock learned 1"]
    uncertainty = viewer.layers["rock learned uncertainty"]
    for layer in (result, uncertainty):
        _same_world(layer, image)
    outside = mask == 0
    np.testing.assert_array_equal(np.asarray(result.data)[outside], image.data[outside])
    spread = np.asarray(uncertainty.data)
    assert (spread >= 0).all() and not spread[outside].any()


def test_learned_training_shows_its_time_left_and_cancels(rock_viewer, qtbot):
    viewer, _ = rock_viewer
    widget = InterpolateWidget(viewer)
    widget.image_picker.value = "rock"
    widget.method.value = "learned"
    widget.methods.form.set_values({**TINY, "train_steps": 100_000, "validation_slices": 0})
    widget.missing.value = "3"
    n_layers = len(viewer.layers)
    job = widget.run()
    qtbot.waitUntil(lambda: "left" in widget.progress_bar.format(), timeout=60_000)
    assert widget.progress.activity is not None  # in napari's activity dock too
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "cancelled" and "Cancelled" in widget.status.text()
    assert len(viewer.layers) == n_layers and widget.run_button.isEnabled()
