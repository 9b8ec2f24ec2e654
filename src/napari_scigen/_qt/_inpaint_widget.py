"""Dock widget: fill a painted mask with any registered inpainting engine."""

from __future__ import annotations

from typing import Any

import napari

from .. import api
from ..core.progress import CancelToken
from ..core.validation import check_mask
from ._base import EngineWidget, LayerPicker, layer_data
from ._methods import MethodChooser
from ._shared import read_slices, slices_field


class InpaintWidget(EngineWidget):
    """Fill the masked pixels of an image layer (outside the mask nothing changes)."""

    engine_name = "inpaint"
    run_text = "Inpaint"

    def build_form(self) -> None:
        self.image_picker = LayerPicker(self.viewer, napari.layers.Image, label="image")
        self.mask_picker = LayerPicker(self.viewer, napari.layers.Labels, label="mask")
        self.methods = MethodChooser("inpaint")
        self.method = self.methods.combo
        self.slices = slices_field(value="all")
        self.form.extend([self.image_picker, self.mask_picker, self.method, self.slices])
        self.add_section(self.methods.native)

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
            "method": self.methods.method,
            "params": self.methods.params(),
            "slices": read_slices(self.slices, self.viewer, image_layer),
        }

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        return api.inpaint_job(
            spec["image"],
            spec["mask"],
            method=spec["method"],
            params=spec["params"],
            slices=spec["slices"],
            cancel=cancel,
        )
