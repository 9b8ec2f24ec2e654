"""Dock widget: DiffEdit, text-guided editing of a masked region (Stable Diffusion).

Two actions share the Run/Cancel/progress machinery of :class:`EngineWidget`:

* **Generate mask** runs :func:`~napari_scigen.engines.diffedit.run_generate_mask`
  and adds the mask as an editable Labels layer ``"<image> diffedit mask <n>"``,
  which the mask picker then selects: correct it with the brush, then
* **Edit** runs :func:`~napari_scigen.engines.diffedit.run_diffedit` and adds the
  edited image as ``"<image> diffedit <n>"`` (pixels outside the mask unchanged).
  Without a mask, DiffEdit's automatic mask is generated first and added too.

The slice helpers at the top are shared with the ControlNet widget.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, PushButton, SpinBox

from .._napari.layers import layer_metadata, next_layer_name
from ..core.indices import parse_indices
from ..core.progress import CancelToken
from ..core.result import EngineResult
from ..core.validation import check_mask
from ._base import EngineWidget, LayerPicker, layer_data

#: Torch device choices offered by the Stable Diffusion widgets.
DEVICES = ("auto", "cpu", "cuda", "mps")
#: Largest seed a spin box accepts.
MAX_SEED = 2**31 - 1
SLICES_TOOLTIP = "'all', 'current' (the slice shown), or indices such as '3-7' or '3, 5, 10-12'"


# ---------------------------------------------------------------------------------------
# Slice selection (shared with the ControlNet widget)
# ---------------------------------------------------------------------------------------


def current_slice(viewer: napari.viewer.Viewer, layer) -> int:
    """Data index of the slice of a 3D ``layer`` shown in ``viewer`` (0 for 2D layers)."""
    if layer.ndim < 3:
        return 0
    z = int(round(float(layer.world_to_data(viewer.dims.point)[-3])))
    return int(np.clip(z, 0, layer.data.shape[-3] - 1))


def parse_slice_selection(text: str, depth: int, current: int) -> list[int] | None:
    """Turn the slices field into indices for the engines (``None`` = every slice).

    Parameters
    ----------
    text : str
        ``"all"``, ``"current"`` or a list of indices/ranges (``"3-7"``, ``"3, 5, 10-12"``).
    depth : int
        Number of slices (1 for a 2D image).
    current : int
        The slice shown in the viewer.

    Raises
    ------
    ValueError
        For unreadable text or indices outside ``0..depth-1``.
    """
    value = text.strip().lower()
    if value in ("", "all"):
        return None
    if value in ("current", "current slice"):
        return [int(current)]
    indices = parse_indices(value, depth)
    if not indices:
        raise ValueError(f"no slice selected by {text!r}; {SLICES_TOOLTIP}")
    return sorted(set(indices))


def seed_box(label: str = "seed", value: int = 0) -> SpinBox:
    """A spin box for a seed (0 .. 2**31-1)."""
    return SpinBox(value=value, min=0, max=MAX_SEED, label=label)


class StableDiffusionFields:
    """The form fields both Stable Diffusion widgets share, and their parameter values."""

    def build_sd_fields(self, defaults) -> None:
        """Create the shared fields from a params dataclass's ``defaults``."""
        self.steps = SpinBox(value=defaults.steps, min=1, max=1000, label="steps")
        self.guidance = FloatSpinBox(
            value=defaults.guidance_scale, min=0.0, max=50.0, step=0.5, label="guidance"
        )
        self.seed = seed_box(value=defaults.seed)
        self.slices = LineEdit(value="current", label="slices", tooltip=SLICES_TOOLTIP)
        self.batch_size = SpinBox(value=defaults.batch_size, min=1, max=256, label="batch size")
        self.device = ComboBox(choices=list(DEVICES), value="auto", label="device")
        self.local_files_only = CheckBox(
            value=defaults.local_files_only, text="local files only (never download)"
        )
        self.resolution = SpinBox(
            value=defaults.resolution, min=16, max=2048, step=8, label="model size (px)"
        )
        self.context = SpinBox(value=defaults.context, min=0, max=1024, label="context (px)")
        self.feather = FloatSpinBox(
            value=defaults.feather, min=0.0, max=64.0, step=0.5, label="feather (px)"
        )

    def sd_values(self) -> dict[str, Any]:
        """The shared fields as params keyword arguments."""
        return {
            "steps": int(self.steps.value),
            "guidance_scale": float(self.guidance.value),
            "seed": int(self.seed.value),
            "resolution": int(self.resolution.value),
            "context": int(self.context.value),
            "feather": float(self.feather.value),
            "batch_size": int(self.batch_size.value),
            "device": self.device.value,
            "local_files_only": bool(self.local_files_only.value),
        }


# ---------------------------------------------------------------------------------------
# Widget
# ---------------------------------------------------------------------------------------


class DiffEditWidget(StableDiffusionFields, EngineWidget):
    """Edit the masked region of an image towards a text prompt (DiffEdit)."""

    engine_name = "diffedit"
    run_text = "Edit"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self._action = "edit"
        super().__init__(napari_viewer)

    def build_form(self) -> None:
        from ..engines.diffedit import DiffEditParams

        defaults = DiffEditParams()
        viewer = self.viewer
        self.image_picker = LayerPicker(viewer, napari.layers.Image, label="image")
        self.mask_picker = LayerPicker(
            viewer, napari.layers.Labels, label="mask (none = auto)", optional=True
        )
        self.mask_picker.tooltip = "painted mask; none = DiffEdit's automatic mask from the prompts"
        self.generate_mask_button = PushButton(text="Generate mask from prompts")
        self.model = LineEdit(
            value=defaults.model,
            label="model",
            tooltip="Hugging Face id or local folder of a Stable Diffusion 1.x/2.x pipeline",
        )
        self.build_sd_fields(defaults)
        self.source_prompt = LineEdit(value=defaults.source_prompt, label="source prompt")
        self.target_prompt = LineEdit(value=defaults.target_prompt, label="target prompt")
        self.target_prompt.tooltip = "what the masked region should become"
        self.strength = FloatSpinBox(
            value=defaults.strength, min=0.01, max=1.0, step=0.05, label="strength"
        )
        self.mask_threshold = FloatSpinBox(
            value=defaults.mask_threshold, min=0.01, max=100.0, step=0.25, label="mask threshold"
        )
        self.mask_threshold.tooltip = "automatic mask: higher = smaller mask"
        self.form.extend(
            [
                self.image_picker,
                self.mask_picker,
                self.generate_mask_button,
                self.model,
                self.local_files_only,
                self.source_prompt,
                self.target_prompt,
                self.steps,
                self.strength,
                self.guidance,
                self.mask_threshold,
                self.seed,
                self.device,
                self.slices,
                self.batch_size,
                self.resolution,
                self.context,
                self.feather,
            ]
        )
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
        """A :class:`DiffEditParams` from the form (raises ``ValueError`` on bad values)."""
        from ..engines.diffedit import DiffEditParams

        return DiffEditParams(
            model=self.model.value.strip(),
            source_prompt=self.source_prompt.value,
            target_prompt=self.target_prompt.value,
            strength=float(self.strength.value),
            mask_threshold=float(self.mask_threshold.value),
            **self.sd_values(),
        )

    def snapshot(self) -> dict[str, Any]:
        action = self._action
        image_layer = self.image_picker.layer
        if image_layer is None:
            raise ValueError("choose an image layer")
        if image_layer.rgb:
            raise ValueError(f"'{image_layer.name}' is RGB; DiffEdit works on grayscale slices")
        params = self.params()
        if not params.model:
            raise ValueError("type a Stable Diffusion model id or folder")
        if not params.target_prompt.strip():
            raise ValueError("type a target prompt: what the region should become")
        image = layer_data(image_layer)
        depth = image.shape[0] if image.ndim == 3 else 1
        slices = parse_slice_selection(
            self.slices.value, depth, current_slice(self.viewer, image_layer)
        )
        mask = None
        mask_layer = self.mask_picker.layer
        if action == "edit" and mask_layer is not None:
            mask = check_mask(
                layer_data(mask_layer), image.shape, name=f"mask '{mask_layer.name}'"
            ).copy()
        return {
            "action": action,
            "source_layer": image_layer,
            "image": image,
            "mask": mask,
            "params": params,
            "slices": slices,
        }

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        from ..engines.diffedit import run_diffedit, run_generate_mask

        if spec["action"] == "mask":
            return run_generate_mask(
                spec["image"], spec["params"], slices=spec["slices"], cancel=cancel
            )
        return run_diffedit(
            spec["image"], spec["mask"], spec["params"], slices=spec["slices"], cancel=cancel
        )

    # -- results -----------------------------------------------------------------------
    def on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        from ..engines.diffedit import MASK_LABEL

        if spec["action"] == "mask":
            layer = self.add_mask_layer(spec, result.labels[MASK_LABEL], result.provenance)
            self.mask_picker.reset_choices()
            self.mask_picker.value = layer.name
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
        return self.viewer.add_labels(
            np.asarray(mask, dtype=np.uint8),
            name=name,
            scale=tuple(source.scale),
            translate=tuple(source.translate),
            metadata=layer_metadata(provenance, dict(source.metadata)),
            opacity=0.6,
        )
