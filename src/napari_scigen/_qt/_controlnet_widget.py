"""Dock widget: ControlNet generation and masked regeneration of microCT slices.

Without a mask, new slices are generated whose structure follows a control image;
with a mask, only the masked region is regenerated (pixels outside stay identical).
The control image is the Canny edge map of the image (ticking "show Canny preview
layer" overlays it as ``"<image> canny preview"``, which follows the sigma/threshold
settings and the current slice), a user layer (e.g. painted grain labels: their outlines), or, in
masked mode, the masked image itself for the inpaint ControlNet.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox

from ..core.progress import CancelToken
from ..core.result import EngineResult
from ..core.stack import Window, percentile_window
from ..core.validation import check_mask
from ._base import EngineWidget, LayerPicker, layer_data
from ._diffedit_widget import (
    StableDiffusionFields,
    current_slice,
    parse_slice_selection,
)

CONTROL_CANNY = "Canny of image"
CONTROL_LAYER = "control layer"
CONTROL_INPAINT = "masked image (inpaint ControlNet)"
CONTROL_CHOICES = (CONTROL_CANNY, CONTROL_LAYER, CONTROL_INPAINT)

#: Images up to this many voxels get a Canny preview of the whole stack; larger
#: ones a preview of the current slice that follows the slider.
PREVIEW_STACK_VOXELS = 2_000_000
#: Percentiles of the run window (the engine default), so the preview matches the run.
WINDOW_PERCENTILES = (0.5, 99.5)


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
        As in :func:`napari_scigen.engines.controlnet.canny_condition`.
    window : Window
        The run's intensity window (percentiles of the whole image), so the preview
        equals the control image the engine will use.
    """
    from ..engines.controlnet import canny_condition

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


class ControlNetWidget(StableDiffusionFields, EngineWidget):
    """Generate or regenerate slices with Stable Diffusion + ControlNet."""

    engine_name = "controlnet"
    run_text = "Generate"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self.preview_layer = None
        self._window_cache: tuple[int, Window] | None = None
        super().__init__(napari_viewer)
        for widget in (
            self.image_picker,
            self.control_source,
            self.canny_sigma,
            self.canny_low,
            self.canny_high,
            self.canny_quantiles,
            self.live_preview,
        ):
            widget.changed.connect(self.update_preview)
        self.mask_picker.changed.connect(self._update_visibility)
        self.control_source.changed.connect(self._update_visibility)
        self.viewer.dims.events.current_step.connect(self._on_slice_change)
        self._update_visibility()
        self.update_preview()

    def build_form(self) -> None:
        from ..engines.controlnet import SCHEDULERS, ControlNetParams

        defaults = ControlNetParams()
        viewer = self.viewer
        self.image_picker = LayerPicker(viewer, napari.layers.Image, label="image")
        self.mask_picker = LayerPicker(
            viewer, napari.layers.Labels, label="mask (optional)", optional=True
        )
        self.mask_picker.tooltip = "set: regenerate only the masked region; none: new slices"
        self.control_source = ComboBox(
            choices=list(CONTROL_CHOICES), value=CONTROL_CANNY, label="control"
        )
        self.control_picker = LayerPicker(
            viewer, (napari.layers.Image, napari.layers.Labels), label="control layer"
        )
        self.control_picker.tooltip = (
            "one slice or the image's shape; labels give their outlines, images are windowed"
        )
        self.canny_sigma = FloatSpinBox(
            value=defaults.canny_sigma, min=0.0, max=20.0, step=0.25, label="Canny sigma"
        )
        self.canny_low = FloatSpinBox(
            value=defaults.canny_low, min=0.0, max=10.0, step=0.01, label="Canny low"
        )
        self.canny_high = FloatSpinBox(
            value=defaults.canny_high, min=0.0, max=10.0, step=0.01, label="Canny high"
        )
        self.canny_quantiles = CheckBox(
            value=defaults.canny_use_quantiles, text="thresholds are quantiles"
        )
        self.live_preview = CheckBox(value=False, text="show Canny preview layer")
        self.live_preview.tooltip = (
            "an overlay of the Canny edges the run will use; follows sigma/low/high and the slice"
        )
        self.build_sd_fields(defaults)
        self.prompt = LineEdit(value=defaults.prompt, label="prompt")
        self.negative_prompt = LineEdit(value=defaults.negative_prompt, label="negative prompt")
        self.conditioning_scale = FloatSpinBox(
            value=defaults.conditioning_scale, min=0.0, max=5.0, step=0.1, label="control scale"
        )
        self.control_start = FloatSpinBox(
            value=defaults.control_start, min=0.0, max=1.0, step=0.05, label="control start"
        )
        self.control_end = FloatSpinBox(
            value=defaults.control_end, min=0.0, max=1.0, step=0.05, label="control end"
        )
        self.strength = FloatSpinBox(
            value=defaults.strength, min=0.01, max=1.0, step=0.05, label="strength (masked)"
        )
        self.variants = SpinBox(value=defaults.n_variants, min=1, max=64, label="variants")
        self.scheduler = ComboBox(
            choices=list(SCHEDULERS), value=defaults.scheduler, label="scheduler"
        )
        self.model = LineEdit(value=defaults.model, label="SD model")
        self.model.tooltip = "Hugging Face id or local folder of a Stable Diffusion 1.5 pipeline"
        self.controlnet_model = LineEdit(value=defaults.controlnet_model, label="ControlNet")
        self.inpaint_controlnet_model = LineEdit(
            value=defaults.inpaint_controlnet_model, label="inpaint ControlNet"
        )
        self.form.extend(
            [
                self.image_picker,
                self.mask_picker,
                self.control_source,
                self.control_picker,
                self.canny_sigma,
                self.canny_low,
                self.canny_high,
                self.canny_quantiles,
                self.live_preview,
                self.prompt,
                self.negative_prompt,
                self.steps,
                self.guidance,
                self.conditioning_scale,
                self.control_start,
                self.control_end,
                self.strength,
                self.seed,
                self.variants,
                self.slices,
                self.batch_size,
                self.device,
                self.scheduler,
                self.model,
                self.controlnet_model,
                self.inpaint_controlnet_model,
                self.local_files_only,
                self.resolution,
                self.context,
                self.feather,
            ]
        )

    def _update_visibility(self, _value=None) -> None:
        masked = self.mask_picker.value is not None
        source = self.control_source.value
        canny = source == CONTROL_CANNY
        self.control_picker.visible = source == CONTROL_LAYER
        for widget in (self.canny_sigma, self.canny_low, self.canny_high, self.canny_quantiles):
            widget.visible = canny
        self.live_preview.visible = canny
        for widget in (self.strength, self.context, self.feather):
            widget.visible = masked
        self.inpaint_controlnet_model.visible = masked and source == CONTROL_INPAINT
        self.controlnet_model.visible = source != CONTROL_INPAINT

    # -- Canny preview (GUI thread) --------------------------------------------------
    def _preview_name(self, image_layer) -> str:
        return f"{image_layer.name} canny preview"

    def _run_window(self, image_layer, image: np.ndarray) -> Window:
        key = id(image_layer.data)
        if self._window_cache is None or self._window_cache[0] != key:
            self._window_cache = (key, percentile_window(image, *WINDOW_PERCENTILES))
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
            edges = canny_preview(
                image,
                z=z,
                sigma=float(self.canny_sigma.value),
                low=float(self.canny_low.value),
                high=float(self.canny_high.value),
                use_quantiles=bool(self.canny_quantiles.value),
                window=self._run_window(image_layer, image),
            )
        except ValueError as error:  # e.g. low > high while the user is typing
            self.set_status(f"Canny preview: {error}")
            return None
        return self._show_preview(image_layer, edges, z)

    def _show_preview(self, image_layer, edges: np.ndarray, z: int | None):
        name = self._preview_name(image_layer)
        ndim = edges.ndim
        scale = tuple(image_layer.scale)[-ndim:]
        translate = tuple(image_layer.translate)[-ndim:]
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
                scale=scale,
                translate=translate,
                colormap="magenta",
                blending="additive",
                contrast_limits=(0, 255),
                metadata={"canny_preview_of": image_layer.name},
            )
            self.preview_layer = layer
        else:
            layer.data = edges
            layer.scale, layer.translate = scale, translate
        layer.metadata["canny_slice"] = z
        return layer

    # -- snapshot / job -----------------------------------------------------------------
    def params(self):
        """A :class:`ControlNetParams` from the form (raises ``ValueError`` on bad values)."""
        from ..engines._sd_common import max_context
        from ..engines.controlnet import ControlNetParams

        shared = self.sd_values()
        if self.mask_picker.value is None:
            # the context field is hidden without a mask (it only sizes the crop around a
            # masked region), so a value too large for the model size must not block a run
            shared["context"] = min(shared["context"], max(0, max_context(shared["resolution"])))
        return ControlNetParams(
            model=self.model.value.strip(),
            controlnet_model=self.controlnet_model.value.strip(),
            inpaint_controlnet_model=self.inpaint_controlnet_model.value.strip(),
            prompt=self.prompt.value,
            negative_prompt=self.negative_prompt.value,
            conditioning_scale=float(self.conditioning_scale.value),
            control_start=float(self.control_start.value),
            control_end=float(self.control_end.value),
            strength=float(self.strength.value),
            n_variants=int(self.variants.value),
            canny_sigma=float(self.canny_sigma.value),
            canny_low=float(self.canny_low.value),
            canny_high=float(self.canny_high.value),
            canny_use_quantiles=bool(self.canny_quantiles.value),
            scheduler=self.scheduler.value,
            **shared,
        )

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
        depth = image.shape[0] if image.ndim == 3 else 1
        slices = parse_slice_selection(
            self.slices.value, depth, current_slice(self.viewer, image_layer)
        )
        source = self.control_source.value
        mask_layer = self.mask_picker.layer
        mask = None
        if mask_layer is not None:
            mask = check_mask(
                layer_data(mask_layer), image.shape, name=f"mask '{mask_layer.name}'"
            ).copy()
        elif source == CONTROL_INPAINT:
            raise ValueError("the inpaint ControlNet needs a mask: choose a mask layer")
        control = None
        if source == CONTROL_LAYER:
            control_layer = self.control_picker.layer
            if control_layer is None:
                raise ValueError("choose a control layer (or use the Canny edges of the image)")
            control = np.array(layer_data(control_layer), copy=True)
        return {
            "source_layer": image_layer,
            "image": image,
            "mask": mask,
            "control": control,
            "control_source": source,
            "params": params,
            "slices": slices,
        }

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        from ..engines.controlnet import run_controlnet, run_controlnet_inpaint

        image, params, control = spec["image"], spec["params"], spec["control"]
        if spec["mask"] is None:
            return run_controlnet(
                image, params, control=control, slices=spec["slices"], cancel=cancel
            )
        if spec["control_source"] == CONTROL_CANNY:
            control = self._canny_control(image, params, spec["slices"])
        return run_controlnet_inpaint(
            image, spec["mask"], params, control=control, slices=spec["slices"], cancel=cancel
        )

    @staticmethod
    def _canny_control(image: np.ndarray, params, slices) -> np.ndarray:
        """Canny edges of the selected slices as a control volume (masked mode, worker thread)."""
        window = percentile_window(image, *params.window_percentiles)
        kwargs = {
            "sigma": params.canny_sigma,
            "low": params.canny_low,
            "high": params.canny_high,
            "use_quantiles": params.canny_use_quantiles,
            "window": window,
        }
        if image.ndim == 2:
            return canny_preview(image, z=None, **kwargs)
        control = np.zeros(image.shape, dtype=np.uint8)
        for z in range(image.shape[0]) if slices is None else slices:
            control[z] = canny_preview(image, z=z, **kwargs)
        return control

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
