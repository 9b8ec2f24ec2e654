"""Dock widget: DiffEdit, text-guided editing of a masked region (Stable Diffusion).

Two actions share the Run/Cancel/progress machinery of :class:`EngineWidget`:

* **Generate mask** runs :func:`napari_scigen.api.mask_job` (DiffEdit's automatic
  mask) and adds the mask as an editable Labels layer ``"<image> diffedit mask <n>"``,
  which the mask picker then selects: correct it with the brush, then
* **Edit** runs :func:`napari_scigen.api.edit_job` and adds the edited image as
  ``"<image> diffedit <n>"`` (pixels outside the mask unchanged). Without a mask,
  DiffEdit's automatic mask is generated first and added too.

The parameter fields are built from :class:`~napari_scigen.engines.sd.params.DiffEditParams`
(the same declarations the ``napari-scigen diffedit`` flags come from).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import napari
import numpy as np
from magicgui.widgets import PushButton

from .. import api
from .._napari.layers import layer_metadata, next_layer_name, source_geometry
from ..core.progress import CancelToken
from ..core.result import EngineResult
from ..core.validation import check_mask
from ..engines.registry import get_engine
from ._base import EngineWidget, LayerPicker, layer_data
from ._fields import ParamsForm
from ._pickers import MaskPicker, large_mask_warning
from ._shared import read_slices, slices_field


class DiffEditWidget(EngineWidget):
    """Edit the masked region of an image towards a text prompt (DiffEdit)."""

    engine_name = "diffedit"
    title = "DiffEdit"
    run_text = "Edit"
    run_tooltip = "edit the masked region of the chosen slices towards the target prompt"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self._action = "edit"
        super().__init__(napari_viewer)

    def build_pickers(self, mask_tooltip: str, mask_source: str) -> None:
        """The image and mask pickers, the automatic-mask button and the slices field.

        ``mask_tooltip`` says what an empty mask means; ``mask_source`` names whose
        automatic mask the button computes.
        """
        self.image_picker = LayerPicker(
            self.viewer,
            napari.layers.Image,
            label="image",
            tooltip="the image to edit (never modified: the result is a new layer)",
        )
        self.mask_picker = MaskPicker(
            self.viewer, self.image_picker, label="mask (none = auto)", tooltip=mask_tooltip
        )
        self.generate_mask_button = PushButton(
            text="Generate mask from prompts",
            tooltip=f"compute {mask_source} automatic mask and add it as an editable Labels "
            "layer (then correct it with the brush and press Edit)",
        )
        self.slices = slices_field()

    def build_form(self) -> None:
        self.build_pickers(
            "painted mask (default: '<image> mask'); none = DiffEdit's automatic mask from "
            "the prompts",
            "DiffEdit's",
        )
        self.fields = ParamsForm(get_engine("edit", "diffedit").params_class)
        self.form.extend(
            [self.image_picker, self.mask_picker, self.generate_mask_button, self.slices]
        )
        self.add_section(self.fields.native)
        self.generate_mask_button.clicked.connect(self.generate_mask)

    # -- actions -----------------------------------------------------------------------
    def start(self, action: str):
        """Run ``"edit"`` or ``"mask"`` (generate the automatic mask) through the base machinery."""
        if action not in ("edit", "mask"):
            raise ValueError(f"unknown DiffEdit action {action!r}")
        self._action = action
        try:
            return self.run()
        finally:
            self._action = "edit"

    def run(self):
        """Start the current action (Edit unless called through :meth:`start`)."""
        job = super().run()
        if job is not None and not job.finished:
            self.generate_mask_button.enabled = False
        return job

    def generate_mask(self):
        """Generate DiffEdit's mask from the prompts as an editable Labels layer."""
        return self.start("mask")

    def _on_finished(self, job) -> None:
        super()._on_finished(job)
        self.generate_mask_button.enabled = True

    # -- snapshot / job ----------------------------------------------------------------
    def params(self):
        """The :class:`DiffEditParams` of the form (raises ``ValueError`` on bad values)."""
        return self.fields.params()

    def snapshot(self) -> dict[str, Any]:
        action = self._action
        image_layer = self.image_picker.layer
        if image_layer is None:
            raise ValueError("choose an image layer")
        if image_layer.rgb:
            raise ValueError(f"'{image_layer.name}' is RGB; DiffEdit works on grayscale slices")
        params = self.params()
        if not params.model.strip():
            raise ValueError("type a Stable Diffusion model id or folder")
        if not params.prompt.strip():
            raise ValueError("type a target prompt: what the region should become")
        image = layer_data(image_layer)
        mask, mask_layer = self.chosen_mask(action, image)
        return {
            "warnings": [large_mask_warning(mask, mask_layer.name)] if mask is not None else [],
            "action": action,
            "source_layer": image_layer,
            "image": image,
            "mask": mask,
            "params": params,
            "slices": read_slices(self.slices, self.viewer, image_layer),
        }

    def chosen_mask(self, action: str, image):
        """``(mask, mask layer)`` of an edit with a painted mask, else ``(None, layer or None)``.

        The mask is checked against ``image`` and copied (the layer is never shared).
        """
        mask_layer = self.mask_picker.layer
        if action != "edit" or mask_layer is None:
            return None, mask_layer
        name = f"mask '{mask_layer.name}'"
        return check_mask(layer_data(mask_layer), image.shape, name=name).copy(), mask_layer

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        method = spec.get("method", "diffedit")  # the Text-guided editing dock's choice
        if spec["action"] == "mask":
            return api.mask_job(
                spec["image"],
                method=method,
                params=spec["params"],
                slices=spec["slices"],
                cancel=cancel,
            )
        return api.edit_job(
            spec["image"],
            spec["mask"],
            method=method,
            params=spec["params"],
            slices=spec["slices"],
            cancel=cancel,
        )

    # -- results -----------------------------------------------------------------------
    def on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        from ..engines.sd.diffedit import MASK_LABEL

        if spec["action"] == "mask":
            layer = self.add_mask_layer(spec, result.labels[MASK_LABEL], result.provenance)
            self.mask_picker.choose(layer.name)
            self.viewer.layers.selection.active = layer
            layer.selected_label = 1
            layer.mode = "paint"
            return
        self.add_result_layers(spec, replace(result, labels={}))
        if spec["mask"] is None and MASK_LABEL in result.labels:
            self.add_mask_layer(spec, result.labels[MASK_LABEL], result.provenance)

    def add_mask_layer(self, spec: dict[str, Any], mask: np.ndarray, provenance: dict):
        """Add ``mask`` as the Labels layer ``"<image> diffedit mask <n>"``."""
        source = spec["source_layer"]
        name = next_layer_name(
            [layer.name for layer in self.viewer.layers], source.name, "diffedit mask"
        )
        mask = np.asarray(mask, dtype=np.uint8)
        return self.viewer.add_labels(
            mask,
            name=name,
            metadata={**layer_metadata(provenance, dict(source.metadata)), "mask_for": source.name},
            opacity=0.6,
            **source_geometry(source, mask.ndim),
        )
