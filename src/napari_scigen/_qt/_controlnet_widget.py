"""Dock widget: ControlNet generation and masked regeneration of microCT slices.

Without a mask, new slices are generated whose structure follows a control image;
with a mask, only the masked region is regenerated (pixels outside stay identical).
The control image is the Canny edge map of the image (ticking "show Canny preview
layer" overlays it as ``"<image> canny preview"``, which follows the sigma/threshold
settings and the current slice), a user layer (e.g. painted grain labels: their
outlines), or, in masked mode, the masked image itself for the inpaint ControlNet.

The parameter fields are built from :class:`~napari_scigen.engines.sd.params.ControlNetParams`
(the same declarations the ``napari-scigen controlnet`` flags come from); the control
choice sets its ``masked_control`` field, and runs go through :mod:`napari_scigen.api`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox

from .. import api
from .._napari.layers import source_geometry
from ..core.progress import CancelToken
from ..core.result import EngineResult
from ..core.stack import Window, percentile_window
from ..core.validation import check_mask
from ..engines.registry import get_engine
from ..engines.sd.control import canny_condition
from ..engines.sd.params import max_context
from ._base import EngineWidget, LayerPicker, layer_data
from ._fields import ParamsForm
from ._pickers import MaskPicker, large_mask_warning
from ._shared import current_slice, read_slices, slices_field

CONTROL_CANNY = "Canny of image"
CONTROL_LAYER = "control layer"
CONTROL_INPAINT = "masked image (inpaint ControlNet)"
CONTROL_CHOICES = (CONTROL_CANNY, CONTROL_LAYER, CONTROL_INPAINT)
#: ``masked_control`` of the control choices that condition masked runs without a layer.
MASKED_CONTROL = {CONTROL_CANNY: "canny", CONTROL_INPAINT: "inpaint"}
#: Fields that only matter with a mask (hidden without one).
MASKED_ONLY_FIELDS = ("strength", "context", "feather")
#: The Canny fields (shown, and followed by the preview, with Canny control).
CANNY_FIELDS = ("canny_sigma", "canny_low", "canny_high", "canny_use_quantiles")

#: Images up to this many voxels get a Canny preview of the whole stack; larger
#: ones a preview of the current slice that follows the slider.
PREVIEW_STACK_VOXELS = 2_000_000


def canny_preview(
    image: np.ndarray,
    *,
    z: int | None,
    sigma: float,
    low: float,
    high: float,
    use_quantiles: bool,
    window: Window,
) -> np.ndarray:
    """Canny map (uint8, 255 on edges) of slice ``z`` of ``image``, or of every slice.

    Parameters
    ----------
    image : numpy.ndarray
        2D slice or 3D volume.
    z : int or None
        The slice to preview; ``None`` previews every slice of a volume.
    sigma, low, high, use_quantiles
        As in :func:`napari_scigen.engines.sd.control.canny_condition`.
    window : Window
        The run's intensity window (percentiles of the whole image), so the preview
        equals the control image the engine will use.
    """

    def one(slice_data):
        return canny_condition(
            np.asarray(slice_data),
            sigma=sigma,
            low=low,
            high=high,
            use_quantiles=use_quantiles,
            window=window,
        )

    if image.ndim == 2:
        return one(image)
    if z is not None:
        return one(image[z])
    return np.stack([one(slice_data) for slice_data in image])


class ControlNetWidget(EngineWidget):
    """Generate or regenerate slices with Stable Diffusion + ControlNet."""

    engine_name = "controlnet"
    title = "ControlNet"
    run_text = "Generate"
    run_tooltip = (
        "generate the chosen slices (without a mask) or regenerate the masked region (with one)"
    )

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self.preview_layer = None
        self._window_cache: tuple[tuple, Window] | None = None
        super().__init__(napari_viewer)
        for widget in (
            self.image_picker,
            self.control_source,
            self.live_preview,
            self.fields["window_percentiles"],
            *(self.fields[name] for name in CANNY_FIELDS),
        ):
            widget.changed.connect(self.update_preview)
        self.mask_picker.changed.connect(self._update_visibility)
        self.control_source.changed.connect(self._update_visibility)
        self.viewer.dims.events.current_step.connect(self._on_slice_change)
        self._update_visibility()
        self.update_preview()

    def build_form(self) -> None:
        viewer = self.viewer
        self.image_picker = LayerPicker(
            viewer,
            napari.layers.Image,
            label="image",
            tooltip="the image whose slices guide (or, with a mask, receive) the generation",
        )
        self.mask_picker = MaskPicker(
            viewer,
            self.image_picker,
            label="mask (optional)",
            tooltip="set: regenerate only the masked region (default: '<image> mask'); "
            "none: new slices",
        )
        self.control_source = ComboBox(
            choices=list(CONTROL_CHOICES),
            value=CONTROL_CANNY,
            label="control",
            tooltip="what the ControlNet follows: the Canny edges of the image, a layer "
            "(labels give their outlines), or the masked image (inpaint ControlNet)",
        )
        self.control_picker = LayerPicker(
            viewer, (napari.layers.Image, napari.layers.Labels), label="control layer"
        )
        self.control_picker.tooltip = (
            "one slice or the image's shape; labels give their outlines, images are windowed"
        )
        self.live_preview = CheckBox(value=False, text="show Canny preview layer")
        self.live_preview.tooltip = (
            "an overlay of the Canny edges the run will use; follows sigma/low/high and the slice"
        )
        self.slices = slices_field()
        # the control choice above sets masked_control
        self.fields = ParamsForm(
            get_engine("generate", "controlnet").params_class, exclude=("masked_control",)
        )
        self.form.extend(
            [
                self.image_picker,
                self.mask_picker,
                self.control_source,
                self.control_picker,
                self.live_preview,
                self.slices,
            ]
        )
        self.add_section(self.fields.native)

    def _update_visibility(self, _value=None) -> None:
        masked = self.mask_picker.value is not None
        source = self.control_source.value
        canny = source == CONTROL_CANNY
        self.control_picker.visible = source == CONTROL_LAYER
        for name in CANNY_FIELDS:
            self.fields[name].visible = canny
        self.live_preview.visible = canny
        for name in MASKED_ONLY_FIELDS:
            self.fields[name].visible = masked
        self.fields["inpaint_controlnet_model"].visible = masked and source == CONTROL_INPAINT
        self.fields["controlnet_model"].visible = source != CONTROL_INPAINT

    # -- Canny preview (GUI thread) --------------------------------------------------
    def _preview_name(self, image_layer) -> str:
        return f"{image_layer.name} canny preview"

    def _run_window(self, image_layer, image: np.ndarray, percentiles) -> Window:
        """The window the run will use (percentiles of the whole image), cached per layer."""
        key = (id(image_layer.data), tuple(percentiles))
        if self._window_cache is None or self._window_cache[0] != key:
            self._window_cache = (key, percentile_window(image, *percentiles))
        return self._window_cache[1]

    def _whole_stack(self, image_layer) -> bool:
        return image_layer.ndim < 3 or int(np.prod(image_layer.data.shape)) <= PREVIEW_STACK_VOXELS

    def _on_slice_change(self, _event=None) -> None:
        image_layer = self.image_picker.layer
        if image_layer is not None and not self._whole_stack(image_layer):
            self.update_preview()

    def update_preview(self, _value=None):
        """Show the Canny map of the image (whole stack if small, else the current slice).

        Returns the preview layer, or ``None`` when there is nothing to preview.
        """
        image_layer = self.image_picker.layer
        if (
            not self.live_preview.value
            or self.control_source.value != CONTROL_CANNY
            or image_layer is None
            or image_layer is self.preview_layer
            or image_layer.rgb
            or image_layer.ndim not in (2, 3)
        ):
            return None
        image = layer_data(image_layer)
        whole = self._whole_stack(image_layer)
        z = None if whole or image.ndim == 2 else current_slice(self.viewer, image_layer)
        try:
            values = self.fields.values()
            edges = canny_preview(
                image,
                z=z,
                sigma=float(values["canny_sigma"]),
                low=float(values["canny_low"]),
                high=float(values["canny_high"]),
                use_quantiles=bool(values["canny_use_quantiles"]),
                window=self._run_window(image_layer, image, values["window_percentiles"]),
            )
        except (ValueError, TypeError) as error:  # e.g. low > high while the user is typing
            self.set_status(f"Canny preview: {error}")
            return None
        return self._show_preview(image_layer, edges, z)

    def _show_preview(self, image_layer, edges: np.ndarray, z: int | None):
        name = self._preview_name(image_layer)
        ndim = edges.ndim
        geometry = source_geometry(image_layer, ndim)
        layer = self.preview_layer
        if layer is not None and (layer not in self.viewer.layers or layer.name != name):
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
            layer = None
        if layer is not None and layer.ndim != ndim:
            self.viewer.layers.remove(layer)
            layer = None
        if layer is None:
            layer = self.viewer.add_image(
                edges,
                name=name,
                **geometry,
                colormap="magenta",
                blending="additive",
                contrast_limits=(0, 255),
                metadata={"canny_preview_of": image_layer.name},
            )
            self.preview_layer = layer
        else:
            layer.data = edges
            layer.scale, layer.translate = geometry["scale"], geometry["translate"]
        layer.metadata["canny_slice"] = z
        return layer

    # -- snapshot / job -----------------------------------------------------------------
    def params(self):
        """The :class:`ControlNetParams` of the form (raises ``ValueError`` on bad values).

        With a mask, the control choice sets ``masked_control``. Without one the context
        field is hidden (it only sizes the crop around a masked region), so a value too
        large for the model size is clamped instead of blocking the run.
        """
        fixed: dict[str, Any] = {}
        if self.mask_picker.value is not None:
            if self.control_source.value in MASKED_CONTROL:
                fixed["masked_control"] = MASKED_CONTROL[self.control_source.value]
        else:
            context, resolution = self.fields["context"].value, self.fields["resolution"].value
            fixed["context"] = min(int(context), max(0, max_context(resolution)))
        return self.fields.params(**fixed)

    def snapshot(self) -> dict[str, Any]:
        image_layer = self.image_picker.layer
        if image_layer is None:
            raise ValueError("choose an image layer")
        if image_layer.rgb:
            raise ValueError(f"'{image_layer.name}' is RGB; ControlNet works on grayscale slices")
        params = self.params()
        if not params.prompt.strip():
            raise ValueError("type a prompt describing the image to generate")
        image = layer_data(image_layer)
        slices = read_slices(self.slices, self.viewer, image_layer)
        source = self.control_source.value
        mask_layer = self.mask_picker.layer
        mask = None
        warnings: list[str | None] = []
        if mask_layer is not None:
            mask = check_mask(
                layer_data(mask_layer), image.shape, name=f"mask '{mask_layer.name}'"
            ).copy()
            warnings.append(large_mask_warning(mask, mask_layer.name))
        elif source == CONTROL_INPAINT:
            raise ValueError("the inpaint ControlNet needs a mask: choose a mask layer")
        control = None
        if source == CONTROL_LAYER:
            control_layer = self.control_picker.layer
            if control_layer is None:
                raise ValueError("choose a control layer (or use the Canny edges of the image)")
            control = np.array(layer_data(control_layer), copy=True)
        return {
            "warnings": warnings,
            "source_layer": image_layer,
            "image": image,
            "mask": mask,
            "control": control,
            "control_source": source,
            "params": params,
            "slices": slices,
        }

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        inputs = {"params": spec["params"], "control": spec["control"], "slices": spec["slices"]}
        if spec["mask"] is None:
            return api.generate_job(spec["image"], method="controlnet", cancel=cancel, **inputs)
        return api.inpaint_job(
            spec["image"], spec["mask"], method="controlnet", cancel=cancel, **inputs
        )

    # -- results ------------------------------------------------------------------------
    def on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        if spec["mask"] is not None:  # masked mode: the image's shape (variants first)
            self.add_result_layers(spec, replace(result, labels={}))
            return
        data = result.data
        if data.shape[0] == 1:  # one variant: (slices, Y, X) or (Y, X)
            data = data[0]
        images = {}
        if spec["control_source"] == CONTROL_LAYER and "control" in result.images:
            images["control"] = result.images["control"][..., 0]
        layers = self.add_result_layers(
            spec, EngineResult(data=data, provenance=result.provenance, images=images)
        )
        image_layer = spec["source_layer"]
        zs = result.provenance.get("source", {}).get("slices") or [0]
        if image_layer.ndim == 3 and zs == list(range(zs[0], zs[0] + len(zs))):
            # put the generated slices where they came from along z
            for layer in layers:
                translate = list(layer.translate)
                translate[-3] = image_layer.translate[-3] + zs[0] * image_layer.scale[-3]
                layer.translate = translate
