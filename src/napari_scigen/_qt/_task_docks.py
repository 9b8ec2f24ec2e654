"""Docks built from the registry for the tasks ``generate``, ``mask``, ``train`` and ``sample``.

Each dock is a method chooser (:class:`~._methods.MethodChooser`) over every engine
registered for its task, with the chosen engine's form built from its params
declarations, plus the inputs of the task's signature
(:data:`napari_scigen.engines.registry.TASKS`); runs go through :mod:`napari_scigen.api`.
Registering an engine is enough for it to appear here with all its parameters:

* *Generate slices* (``api.generate_job``): new slices conditioned on the chosen slices
  of an image (a control layer for engines that take one), as ``"<image> <method> <n>"``
  placed at the first chosen slice;
* *Automatic mask* (``api.mask_job``): a mask derived from the data, added as the
  editable Labels layer ``"<image> <method> mask <n>"`` that the masked docks then pick;
* *Train a model* (``api.train_job``): training on a volume into a run folder (resumed
  from its newest checkpoint), previews in ``"<method> preview"``;
* *Sample a model* (``api.sample_job``): new slices from a trained model, as
  ``"<method> samples <n>"``.

The specialised docks (ControlNet's Canny preview, DiffEdit, the StyleGAN tabs with the
hand-over to Slice interpolation, Fine-tune SD) stay for what only their engine has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, FileEdit

from .. import api
from .._napari.layers import layer_metadata, next_layer_name, shown_units, source_geometry
from ..core.progress import CancelToken, Progress
from ..core.result import EngineResult
from ..engines.registry import get_engine
from ._base import EngineWidget, LayerPicker, layer_data
from ._methods import MethodChooser
from ._shared import read_slices, slices_field


def show_preview(viewer, name: str, image) -> Any:
    """Show a training preview (values in ``[0, 1]``) in the image layer ``name``, reused."""
    image = np.asarray(image, dtype=np.float32)
    if name in viewer.layers and viewer.layers[name].ndim == image.ndim:
        layer = viewer.layers[name]
        layer.data = image
        return layer
    return viewer.add_image(
        image,
        name=name,
        colormap="gray",
        contrast_limits=(0.0, 1.0),
        **shown_units(viewer.layers, image.ndim),
    )


class TaskWidget(EngineWidget):
    """A dock over every registered engine of :attr:`task` (a method chooser and its form)."""

    #: The registry task this dock serves.
    task = ""

    def build_methods(self, *widgets) -> None:
        """Put ``widgets``, the method combo box, then the chosen engine's form in the dock."""
        self.methods = MethodChooser(self.task)
        self.method = self.methods.combo
        self.form.extend([*widgets, self.method])
        self.add_section(self.methods.native)

    def params(self):
        """The chosen engine's params from its form (``ValueError`` on bad values)."""
        return self.methods.params()

    def chosen_layer(self, picker: LayerPicker, what: str):
        """The picked image layer (single-channel), or a ``ValueError`` saying what to pick."""
        layer = picker.layer
        if layer is None:
            raise ValueError(f"choose {what}")
        if layer.rgb:
            raise ValueError(f"'{layer.name}' is RGB; {self.title} works on grayscale data")
        return layer


class SliceTaskWidget(TaskWidget):
    """Shared by *Generate slices* and *Automatic mask*: an image, its slices, a method."""

    def build_form(self) -> None:
        self.image_picker = LayerPicker(
            self.viewer,
            napari.layers.Image,
            label="image",
            tooltip="the image whose slices the method works on (never modified: the result "
            "is a new layer)",
        )
        self.slices = slices_field()
        self.build_methods(self.image_picker, self.slices)

    def snapshot(self) -> dict[str, Any]:
        layer = self.chosen_layer(self.image_picker, "an image layer")
        return {
            "source_layer": layer,
            "image": layer_data(layer),
            "method": self.methods.method,
            "params": self.params(),
            "slices": read_slices(self.slices, self.viewer, layer),
        }


class GenerateWidget(SliceTaskWidget):
    """Generate new slices from real ones with any registered ``generate`` engine."""

    task = "generate"
    engine_name = "generate"
    title = "Generate slices"
    run_text = "Generate"
    run_tooltip = "generate new slices from the chosen slices with the chosen method"

    def build_form(self) -> None:
        super().build_form()
        self.control_picker = LayerPicker(
            self.viewer,
            (napari.layers.Image, napari.layers.Labels),
            label="control layer",
            optional=True,
            tooltip="what the generation follows instead of the method's own condition "
            "(labels give their outlines); one slice or the image's shape. Only for methods "
            "that take a control input",
        )
        self.form.insert(1, self.control_picker)
        self.method.changed.connect(self._update_control)
        self._update_control()

    def takes_control(self) -> bool:
        """Whether the chosen method takes a control input (its registry entry says)."""
        return "control" in get_engine(self.task, self.method.value).inputs

    def _update_control(self, _value=None) -> None:
        self.control_picker.visible = self.takes_control()

    def snapshot(self) -> dict[str, Any]:
        spec = super().snapshot()
        control_layer = self.control_picker.layer if self.takes_control() else None
        spec["control"] = (
            None if control_layer is None else np.array(layer_data(control_layer), copy=True)
        )
        return spec

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        return api.generate_job(
            spec["image"],
            method=spec["method"],
            params=spec["params"],
            control=spec["control"],
            slices=spec["slices"],
            cancel=cancel,
        )

    def on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        data = result.data[0] if result.data.shape[0] == 1 else result.data  # one variant
        layers = self.add_result_layers(spec, EngineResult(data=data, provenance=result.provenance))
        source = spec["source_layer"]
        zs = list(result.provenance.get("source", {}).get("slices") or [0])
        if source.ndim == 3 and data.ndim >= 3 and zs == list(range(zs[0], zs[0] + len(zs))):
            for layer in layers:  # a run of slices: the new ones sit where theirs do
                shift = list(layer.translate)
                shift[-3] = float(source.translate[-3]) + zs[0] * float(source.scale[-3])
                layer.translate = shift


class AutoMaskWidget(SliceTaskWidget):
    """Derive an editable mask from the data with any registered ``mask`` engine."""

    task = "mask"
    engine_name = "mask"
    title = "Automatic mask"
    run_text = "Find mask"
    run_tooltip = (
        "derive a mask of the chosen slices with the chosen method; it is added as an "
        "editable Labels layer that the inpainting and editing docks then pick"
    )

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        return api.mask_job(
            spec["image"],
            method=spec["method"],
            params=spec["params"],
            slices=spec["slices"],
            cancel=cancel,
        )

    def on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        source = spec["source_layer"]
        mask = np.asarray(next(iter(result.labels.values()), result.data), dtype=np.uint8)
        name = next_layer_name(
            [layer.name for layer in self.viewer.layers], source.name, f"{spec['method']} mask"
        )
        self.viewer.add_labels(
            mask,
            name=name,
            metadata={
                **layer_metadata(result.provenance, dict(source.metadata)),
                "mask_for": source.name,
            },
            opacity=0.6,
            **source_geometry(source, mask.ndim),
        )


class TrainWidget(TaskWidget):
    """Train a generative model on a volume with any registered ``train`` engine."""

    task = "train"
    engine_name = "train"
    title = "Train a model"
    run_text = "Train"
    run_tooltip = (
        "train the chosen model on the volume's slices; checkpoints go to the run folder "
        "(Cancel writes one too)"
    )

    def build_form(self) -> None:
        self.volume_picker = LayerPicker(
            self.viewer,
            napari.layers.Image,
            label="volume",
            tooltip="the volume whose slices the model is trained on",
        )
        self.out_dir = FileEdit(mode="d", value="", label="run folder")
        self.out_dir.line_edit.value = ""  # FileEdit("") would be the working folder
        self.out_dir.tooltip = (
            "checkpoints (or the adapter) go here; an existing run continues from its newest "
            "checkpoint"
        )
        self.resume = CheckBox(value=True, text="resume from the newest checkpoint")
        self.resume.tooltip = "continue the run in the folder; off: start over"
        self.build_methods(self.volume_picker, self.out_dir, self.resume)

    def snapshot(self) -> dict[str, Any]:
        source = self.chosen_layer(self.volume_picker, "a volume (3D image layer) to train on")
        volume = layer_data(source)
        if volume.ndim != 3:
            raise ValueError(f"'{source.name}' is {volume.ndim}D; training needs a 3D volume")
        folder = str(self.out_dir.line_edit.value).strip()
        if not folder:
            raise ValueError("choose a run folder for the checkpoints")
        return {
            "source_layer": source,
            "volume": volume,
            "method": self.methods.method,
            "out_dir": Path(folder).expanduser(),
            "resume": bool(self.resume.value),
            "params": self.params(),
        }

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        return api.train_job(
            spec["volume"],
            out_dir=str(spec["out_dir"]),
            method=spec["method"],
            params=spec["params"],
            resume=spec["resume"],
            cancel=cancel,
        )

    def _on_progress(self, event: Progress) -> None:
        super()._on_progress(event)
        if event.preview is not None:
            self.show_preview(self.methods.method, event.preview)

    def show_preview(self, method: str, image) -> Any:
        """Show a training preview in the ``"<method> preview"`` layer (one per method)."""
        return show_preview(self.viewer, f"{method} preview", image)

    def on_result(self, spec: dict[str, Any], result) -> None:
        self.show_preview(spec["method"], result.data)

    def _on_result(self, spec: dict[str, Any], result) -> None:
        super()._on_result(spec, result)
        self.set_status(
            f"Trained {result.step} steps; wrote {result.checkpoint}. Give the run folder "
            f"{spec['out_dir']} to the sampling or Stable Diffusion docks."
        )


class SampleWidget(TaskWidget):
    """Draw new slices from a trained model with any registered ``sample`` engine."""

    task = "sample"
    engine_name = "sample"
    title = "Sample a model"
    run_text = "Sample"
    run_tooltip = "draw new slices from the chosen model; they are added as a new layer"

    def build_form(self) -> None:
        self.build_methods()

    def snapshot(self) -> dict[str, Any]:
        return {"method": self.methods.method, "params": self.params()}

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        return api.sample_job(method=spec["method"], params=spec["params"], cancel=cancel)

    def on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        data = result.data
        name = next_layer_name(
            [layer.name for layer in self.viewer.layers], spec["method"], "samples"
        )
        values = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.floating) else data
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        self.viewer.add_image(
            data,
            name=name,
            metadata=layer_metadata(result.provenance),
            contrast_limits=(low, high if high > low else low + 1.0),
            **shown_units(self.viewer.layers, data.ndim),
        )
