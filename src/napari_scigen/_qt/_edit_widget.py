"""Dock widget: text-guided editing with any registered *edit* engine.

The method list is the registry's ``edit`` task (DiffEdit, InstructPix2Pix, LEDITS++
and any engine a plugin registers), each with the form built from its params
declarations (:class:`~._methods.MethodChooser`), so a prompt field is whatever the
engine declares. The result is ``"<image> <method> <n>"``; an engine's automatic mask
(DiffEdit without a painted mask) is added as an editable Labels layer. For a method
that also has a ``mask`` engine (DiffEdit), *Generate mask from prompts* adds that mask
first, to correct with the brush before editing.
"""

from __future__ import annotations

from typing import Any

from ..engines.registry import engine_names
from ._base import layer_data
from ._diffedit_widget import DiffEditWidget
from ._methods import MethodChooser
from ._pickers import large_mask_warning
from ._shared import read_slices


class EditWidget(DiffEditWidget):
    """Edit slices of an image towards a text instruction or prompt, method of your choice."""

    engine_name = "edit"
    title = "Text-guided editing"
    run_text = "Edit"
    run_tooltip = "edit the chosen slices with the chosen method; a new layer is added"

    def build_form(self) -> None:
        self.build_pickers(
            "the region to edit (default: '<image> mask'); none = the method's own mask "
            "(DiffEdit's prompt difference) or the whole slice",
            "the method's",
        )
        self.methods = MethodChooser("edit")
        self.method = self.methods.combo
        self.form.extend(
            [
                self.image_picker,
                self.mask_picker,
                self.method,
                self.generate_mask_button,
                self.slices,
            ]
        )
        self.add_section(self.methods.native)
        self.generate_mask_button.clicked.connect(self.generate_mask)
        self.method.changed.connect(self._update_mask_button)
        self._update_mask_button()

    def _update_mask_button(self, _value=None) -> None:
        self.generate_mask_button.visible = self.methods.method in engine_names("mask")

    def params(self):
        """The chosen engine's params from its form (``ValueError`` on bad values)."""
        return self.methods.params()

    def job_title(self, spec: dict[str, Any]) -> str:
        return f"{self.title} ({spec['method']})"

    def snapshot(self) -> dict[str, Any]:
        action = self._action
        image_layer = self.image_picker.layer
        if image_layer is None:
            raise ValueError("choose an image layer")
        if image_layer.rgb:
            raise ValueError(f"'{image_layer.name}' is RGB; editing works on grayscale slices")
        method = self.methods.method
        if action == "mask" and method not in engine_names("mask"):
            raise ValueError(f"{method} has no automatic mask; paint one in Mask painting")
        params = self.params()
        image = layer_data(image_layer)
        mask, mask_layer = self.chosen_mask(action, image)
        return {
            "warnings": [large_mask_warning(mask, mask_layer.name)] if mask is not None else [],
            "action": action,
            "method": method,
            "source_layer": image_layer,
            "image": image,
            "mask": mask,
            "mask_layer": mask_layer if mask is not None else None,
            "params": params,
            "slices": read_slices(self.slices, self.viewer, image_layer),
        }
