"""Dock widget: classical biharmonic inpainting of a painted mask."""

from __future__ import annotations

from typing import Any

import napari
from magicgui.widgets import SpinBox

from ..core.progress import CancelToken
from ..core.validation import check_mask
from ._base import EngineWidget, LayerPicker, layer_data


class InpaintWidget(EngineWidget):
    """Fill the masked pixels of an image layer (biharmonic, slice by slice)."""

    engine_name = "inpaint"
    run_text = "Inpaint"

    def build_form(self) -> None:
        self.image_picker = LayerPicker(self.viewer, napari.layers.Image, label="image")
        self.mask_picker = LayerPicker(self.viewer, napari.layers.Labels, label="mask")
        self.tile_size = SpinBox(value=256, min=32, max=4096, step=32, label="tile size")
        self.context = SpinBox(value=16, min=2, max=256, label="context (px)")
        self.form.extend([self.image_picker, self.mask_picker, self.tile_size, self.context])

    def snapshot(self) -> dict[str, Any]:
        image_layer, mask_layer = self.image_picker.layer, self.mask_picker.layer
        if image_layer is None or mask_layer is None:
            raise ValueError("choose an image layer and a mask (Labels) layer")
        image = layer_data(image_layer)
        mask = check_mask(layer_data(mask_layer), image.shape, name=f"mask '{mask_layer.name}'")
        return {
            "source_layer": image_layer,
            "image": image,
            "mask": mask.copy(),
            "tile_size": int(self.tile_size.value),
            "context": int(self.context.value),
        }

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        from ..engines.classical import InpaintParams, run_inpaint

        params = InpaintParams(tile_size=spec["tile_size"], context=spec["context"])
        return run_inpaint(spec["image"], spec["mask"], params, cancel=cancel)
