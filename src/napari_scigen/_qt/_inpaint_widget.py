"""Dock widget: fill a painted mask with any registered inpainting engine.

The method list is the registry's (``biharmonic``, ``learned``, the diffusion engines,
...), each with its declared form; ``learned`` adds its uncertainty map as the layer
``"<image> learned uncertainty"``. *Run on the whole volume* runs the method chunked into
a zarr store shown as a layer while it fills in (:mod:`._batch`).
"""

from __future__ import annotations

from typing import Any

import napari

from ..core.progress import CancelToken
from ..core.validation import check_mask
from ._base import EngineWidget, LayerPicker, layer_data
from ._methods import MethodChooser
from ._offload import engine_job
from ._pickers import MaskPicker, large_mask_warning
from ._shared import read_slices, slices_field


class InpaintWidget(EngineWidget):
    """Fill the masked pixels of an image layer (outside the mask nothing changes)."""

    engine_name = "inpaint"
    title = "Inpainting"
    run_text = "Inpaint"
    run_tooltip = "fill the masked pixels with the chosen method; a new layer is added"
    whole_volume_task = "inpaint"

    def build_form(self) -> None:
        self.image_picker = LayerPicker(
            self.viewer,
            napari.layers.Image,
            label="image",
            tooltip="the image layer to fill; it is never modified (the result is a new layer)",
        )
        self.mask_picker = MaskPicker(
            self.viewer,
            self.image_picker,
            label="mask",
            tooltip="the pixels to regenerate (a Labels layer, non-zero = masked): by default "
            "'<image> mask' from Mask painting, never a ground-truth layer",
        )
        self.methods = MethodChooser("inpaint")
        self.method = self.methods.combo
        self.slices = slices_field(value="all")
        self.form.extend([self.image_picker, self.mask_picker, self.method, self.slices])
        self.add_section(self.methods.native)

    def _layers(self):
        image_layer, mask_layer = self.image_picker.layer, self.mask_picker.layer
        if image_layer is None:
            raise ValueError("choose an image layer")
        if mask_layer is None:
            raise ValueError(
                "choose a mask (Labels) layer, or paint one: Mask painting ▸ Create mask layer"
            )
        return image_layer, mask_layer

    def snapshot(self) -> dict[str, Any]:
        image_layer, mask_layer = self._layers()
        image = layer_data(image_layer)
        mask = check_mask(layer_data(mask_layer), image.shape, name=f"mask '{mask_layer.name}'")
        return {
            "source_layer": image_layer,
            "image": image,
            "warnings": [large_mask_warning(mask, mask_layer.name)],
            "mask": mask.copy(),
            "mask_layer": mask_layer,
            "method": self.methods.method,
            "params": self.methods.params(),
            "slices": read_slices(self.slices, self.viewer, image_layer),
        }

    def whole_volume_request(self) -> dict[str, Any]:
        image_layer, mask_layer = self._layers()
        if tuple(mask_layer.data.shape) != tuple(image_layer.data.shape):
            raise ValueError(
                f"mask '{mask_layer.name}' has shape {tuple(mask_layer.data.shape)}, the image "
                f"{tuple(image_layer.data.shape)}: a whole-volume run needs a mask of the "
                "image's shape"
            )
        return {
            "layer": image_layer,
            "mask_layer": mask_layer,
            "method": self.methods.method,
            "params": self.methods.params(),
            "slices": read_slices(self.slices, self.viewer, image_layer),
        }

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        # biharmonic runs in a child process: scipy's spsolve holds the GIL for seconds
        return engine_job(
            "inpaint",
            spec["method"],
            cancel,
            spec["image"],
            spec["mask"],
            params=spec["params"],
            slices=spec["slices"],
        )
