"""One registry-driven dock for every text-guided *edit* engine (issue 21, finding 10):
DiffEdit, InstructPix2Pix and LEDITS++ (and whatever a plugin registers) with the forms
their params declare."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scigen._qt._edit_widget import EditWidget
from napari_scigen.core.params import fields_of
from napari_scigen.engines.registry import engine_names, engines


def test_the_edit_dock_offers_every_registered_edit_engine_with_its_declared_form(
    rock_viewer,
):
    viewer, _ = rock_viewer
    widget = EditWidget(viewer)
    assert tuple(widget.method.choices) == engine_names("edit")
    assert {"diffedit", "instructpix2pix", "ledits"} <= set(engine_names("edit"))
    for engine in engines("edit"):
        widget.methods.method = engine.name
        form = widget.methods.form
        assert set(form.widgets) == {spec.name for spec in fields_of(engine.params_class)}
        assert widget.params() == engine.params_class()  # the form starts at the defaults
        prompts = [s.name for s in fields_of(engine.params_class) if s.info.kind == "prompt"]
        assert prompts and not any(form.widgets[name].native.isHidden() for name in prompts)
        # the automatic-mask button only where the method has a mask engine
        shown = not widget.generate_mask_button.native.isHidden()
        assert shown == (engine.name in engine_names("mask"))


def test_the_edit_dock_runs_instructpix2pix_into_a_layer_named_after_it(
    tmp_path_factory, make_napari_viewer, nothreads
):
    pytest.importorskip("diffusers")
    from tiny_sd_more import TINY_RESOLUTION, more_tiny_models

    models = more_tiny_models(lambda: tmp_path_factory.mktemp("tiny_sd_edit_dock"))
    rng = np.random.default_rng(0)
    volume = (rng.normal(16000, 3000, (3, 64, 64))).clip(0).astype(np.uint16)
    viewer = make_napari_viewer()
    image = viewer.add_image(volume, name="vol", scale=(4.0, 1.5, 1.5))
    mask = np.zeros(volume.shape, np.uint8)
    mask[1, 20:40, 24:44] = 1
    viewer.add_labels(mask, name="vol mask", scale=(4.0, 1.5, 1.5))
    widget = EditWidget(viewer)
    widget.image_picker.value = "vol"
    widget.methods.method = "instructpix2pix"
    form = widget.methods.form
    form.set_values(
        {
            "model": str(models.instructpix2pix),
            "local_files_only": True,
            "steps": 2,
            "resolution": TINY_RESOLUTION,
            "context": 8,
            "feather": 2.0,
            "device": "cpu",
            "seed": 5,
        }
    )
    params_class = engines("edit")[engine_names("edit").index("instructpix2pix")].params_class
    instruction = next(s.name for s in fields_of(params_class) if s.info.kind == "prompt")
    form.set_values({instruction: "larger pores"})  # whatever the engine calls its prompt
    widget.mask_picker.value = "vol mask"
    widget.slices.value = "1"
    widget.run()
    assert widget.status.text().startswith("Done"), widget.status.text()
    result = viewer.layers["vol instructpix2pix 1"]
    outside = mask == 0
    np.testing.assert_array_equal(result.data[outside], image.data[outside])
    assert result.metadata["provenance"]["method"] == "instructpix2pix"
    assert tuple(result.scale) == (4.0, 1.5, 1.5)
