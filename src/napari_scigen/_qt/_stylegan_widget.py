"""Dock widget: train a StyleGAN2 on a volume, sample new slices, walk the latent space.

Three tabs share one Run/Cancel/progress bar; the Run button does what the shown tab
says. The tabs' fields are built from the engines' parameter declarations
(:mod:`napari_scigen.engines.stylegan.params`, the same ones the CLI flags come from)
and the jobs run through :mod:`napari_scigen.api`:

* **Train** (``api.train_job``) trains on the slices of the chosen volume into a run
  folder (checkpoints are the engine's job; a run resumes from the newest one, with
  the architecture saved there). Preview grids of samples appear, while training
  runs, in the image layer ``"stylegan preview"``.
* **Sample** (``api.sample_job(method="stylegan")``) generates new random slices.
* **Latent walk** (``api.sample_job(method="stylegan-walk")``) renders the frames
  between the latents of two seeds as a stack layer to scroll through.

Sample and Latent walk use the generator named above the tabs: empty for the
embedded default, or a run folder, checkpoint or exported ``.safetensors``. After
training (finished or cancelled: Cancel writes a checkpoint), it points at the run
folder, and so does the ``stylegan`` generator field of an open Slice interpolation
dock that has none yet; *Use in Slice interpolation* hands the generator over (and
opens that dock) at any time. New layers are placed in the chosen volume's world
(its scale, translate and units), selected, with the slider on their first slice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, Container, FileEdit
from qtpy.QtWidgets import QPushButton, QTabWidget, QVBoxLayout, QWidget

from .. import api
from .._napari.layers import layer_metadata, next_layer_name, shown_units, source_geometry
from ..core.params import field_spec
from ..core.progress import CancelToken, Progress
from ..engines.stylegan.params import (
    NETWORK_FIELDS,
    StyleGANSampleParams,
    StyleGANTrainParams,
    StyleGANWalkParams,
)
from ._base import EngineWidget, LayerPicker, layer_data, open_dock, open_widgets
from ._fields import ParamsForm, read_widget, widget_for

#: Name of the layer showing training previews.
PREVIEW_LAYER = "stylegan preview"
#: Tabs, in order: (action, Run button text, tab title).
ACTIONS = (
    ("train", "Train", "Train"),
    ("sample", "Sample", "Sample"),
    ("walk", "Walk", "Latent walk"),
)
#: What Run does on each tab (its tooltip and the tab's).
ACTION_HELP = {
    "train": "train a generator on the volume's slices; checkpoints go to the run folder "
    "(Cancel writes one too)",
    "sample": "generate new random slices with the generator",
    "walk": "render a smooth walk through the generator's latent space, seed A to seed B",
}
#: Display name of the Slice interpolation dock (napari.yaml).
INTERPOLATION_DOCK = "Slice interpolation"
#: Fields shown once above the tabs (and set on every job's params from there).
SHARED_FIELDS = ("generator", "device")


def _tab(*parts) -> QWidget:
    """A tab page holding magicgui containers / parameter forms, top-aligned."""
    page = QWidget()
    layout = QVBoxLayout(page)
    for part in parts:
        layout.addWidget(part.native)
    # short tabs keep their rows together at the top instead of spreading out to the
    # height of the tallest (Train) tab
    layout.addStretch(1)
    return page


class StyleGANWidget(EngineWidget):
    """Train a StyleGAN2 on a volume, sample new slices and walk its latent space."""

    engine_name = "stylegan"
    title = "StyleGAN"
    run_text = "Train"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self.preview_layer = None
        self.last_layer = None
        super().__init__(napari_viewer)
        self.tabs.currentChanged.connect(self._on_tab)
        self._on_tab(self.tabs.currentIndex())

    def build_form(self) -> None:
        # Shared: the volume (training data, and the world new layers are placed in),
        # the generator of Sample and Latent walk, and the device of every job.
        self.volume_picker = LayerPicker(
            self.viewer,
            napari.layers.Image,
            label="volume",
            tooltip="the volume to train on; sampled slices and walks are placed in its world "
            "(scale, translate, units)",
        )
        self.generator_spec = field_spec(StyleGANSampleParams, "generator")
        self.generator = widget_for(self.generator_spec, None)
        self.generator.line_edit.value = ""  # empty = embedded (FileEdit("") would be the cwd)
        self.device = widget_for(field_spec(StyleGANSampleParams, "device"), "auto")
        self.form.extend([self.volume_picker, self.generator, self.device])
        # Train tab: the run folder and resume choice, then the training parameters
        self.out_dir = FileEdit(mode="d", value="", label="run folder")
        self.out_dir.tooltip = (
            "checkpoints go here; an existing run continues from its newest checkpoint"
        )
        self.resume = CheckBox(value=True, text="resume from the newest checkpoint")
        self.resume.tooltip = (
            "continue the run in the folder with its saved architecture (the network sizes "
            "below then do not apply); off: start over"
        )
        self.train_form = ParamsForm(StyleGANTrainParams, exclude=("device",))
        self.sample_form = ParamsForm(StyleGANSampleParams, exclude=SHARED_FIELDS)
        self.walk_form = ParamsForm(StyleGANWalkParams, exclude=SHARED_FIELDS)
        run_folder = Container(widgets=[self.out_dir, self.resume], labels=True)
        pages = (_tab(run_folder, self.train_form), _tab(self.sample_form), _tab(self.walk_form))
        self.tabs = QTabWidget()
        for page, (action, _, title) in zip(pages, ACTIONS, strict=True):
            index = self.tabs.addTab(page, title)
            self.tabs.setTabToolTip(index, ACTION_HELP[action])
        self.tabs.setToolTip("the Run button does what the shown tab says")
        self.form.native.layout().addWidget(self.tabs)
        self.handover_button = QPushButton("Use in Slice interpolation")
        self.handover_button.setToolTip(
            "set this generator (empty = the embedded one) as the 'stylegan' generator of "
            "the Slice interpolation dock, opening it if needed"
        )
        self.handover_button.clicked.connect(self.use_in_interpolation)
        self.add_section(self.handover_button)

    def _on_tab(self, index: int) -> None:
        action, text, _ = ACTIONS[index]
        self.run_button.setText(text)
        self.run_button.setToolTip(ACTION_HELP[action])
        self.generator.visible = action != "train"

    @property
    def action(self) -> str:
        """``"train"``, ``"sample"`` or ``"walk"``: what Run does (the shown tab)."""
        return ACTIONS[self.tabs.currentIndex()][0]

    def start(self, action: str):
        """Show the tab of ``action`` and run it."""
        names = [name for name, _, _ in ACTIONS]
        if action not in names:
            raise ValueError(f"unknown StyleGAN action {action!r}; choose from {names}")
        self.tabs.setCurrentIndex(names.index(action))
        return self.run()

    # -- snapshot / job ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        action = self.action
        source = self.volume_picker.layer
        device = self.device.value
        spec: dict[str, Any] = {"action": action, "source_layer": source}
        if action == "train":
            if source is None:
                raise ValueError("choose a volume (3D image layer) to train on")
            volume = layer_data(source)
            if volume.ndim != 3:
                raise ValueError(f"'{source.name}' is {volume.ndim}D; training needs a 3D volume")
            out_text = self.out_dir.line_edit.value.strip()
            if not out_text:
                raise ValueError("choose a run folder for the checkpoints")
            spec.update(
                volume=volume,
                out_dir=Path(out_text).expanduser(),
                resume=bool(self.resume.value),
                params=self.train_form.params(device=device),
            )
            return spec
        form = self.sample_form if action == "sample" else self.walk_form
        generator = read_widget(self.generator_spec, self.generator)
        spec["params"] = form.params(generator=generator, device=device)
        return spec

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        if spec["action"] == "train":
            return api.train_job(
                spec["volume"],
                out_dir=str(spec["out_dir"]),
                method="stylegan",
                params=spec["params"],
                resume=spec["resume"],
                cancel=cancel,
            )
        method = "stylegan" if spec["action"] == "sample" else "stylegan-walk"
        return api.sample_job(method=method, params=spec["params"], cancel=cancel)

    # -- progress and results (GUI thread) ---------------------------------------------
    def _on_progress(self, event: Progress) -> None:
        super()._on_progress(event)
        if event.preview is not None:
            self.show_preview(event.preview)

    def _geometry(self, source, ndim: int) -> dict[str, Any]:
        """The source's world, or without one the units already shown (one world unit)."""
        if source is not None:
            return source_geometry(source, ndim)
        return shown_units(self.viewer.layers, ndim)

    def show_preview(self, grid: np.ndarray):
        """Show a training preview grid in the ``"stylegan preview"`` layer."""
        grid = np.asarray(grid, dtype=np.float32)
        layer = self.preview_layer
        if layer is not None and layer in self.viewer.layers and layer.ndim == grid.ndim:
            layer.data = grid
            return layer
        self.preview_layer = self.viewer.add_image(
            grid,
            name=PREVIEW_LAYER,
            colormap="gray",
            contrast_limits=(0.0, 1.0),
            **self._geometry(self.volume_picker.layer, grid.ndim),
        )
        return self.preview_layer

    def _on_result(self, spec: dict[str, Any], result) -> None:
        super()._on_result(spec, result)
        if spec["action"] == "train":
            kept = (
                " Resumed with the run's saved architecture (shown in the form)."
                if result.adopted_saved_config
                else ""
            )
            self.set_status(
                f"Trained {result.step} steps; checkpoint {result.checkpoint}.{kept} "
                "Sample and Latent walk now use this run."
            )

    def on_result(self, spec: dict[str, Any], result) -> None:
        if spec["action"] == "train":
            self.show_preview(result.preview)
            if result.adopted_saved_config:
                used = result.provenance["params"]
                self.train_form.set_values({name: used[name] for name in NETWORK_FIELDS})
            self.adopt_run(spec["out_dir"])
            return
        stem = "samples" if spec["action"] == "sample" else "walk"
        name = next_layer_name([layer.name for layer in self.viewer.layers], "stylegan", stem)
        data = result.data
        finite = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.floating) else data
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        source = spec["source_layer"]
        layer = self.viewer.add_image(
            data,
            name=name,
            metadata=layer_metadata(
                result.provenance, dict(source.metadata) if source is not None else None
            ),
            contrast_limits=(low, high if high > low else low + 1.0),
            **self._beside(source, data.ndim),
        )
        self.last_layer = layer  # the base selects it (the slider is already on it)

    def _beside(self, source, ndim: int) -> dict[str, Any]:
        """Samples and walk frames in the volume's world, but beside it (to its right) from
        the slice shown: not an opaque tile over the volume's corner, and the slider stays
        where the user is."""
        geometry = self._geometry(source, ndim)
        if source is None or ndim != 3 or source.ndim < 3:
            return geometry
        translate = list(geometry["translate"])
        axis = self.viewer.dims.ndim - 3
        translate[0] = float(self.viewer.dims.point[axis]) if axis >= 0 else translate[0]
        width = float(source.data.shape[-1]) * float(source.scale[-1])
        translate[-1] = float(source.translate[-1]) + 1.05 * width
        return {**geometry, "translate": tuple(translate)}

    def on_cancelled(self, spec: dict[str, Any]) -> None:
        """After a cancelled training run: use the checkpoint the engine wrote on Cancel."""
        if spec["action"] != "train":
            return
        from ..engines._training.checkpoint import latest_checkpoint

        newest = latest_checkpoint(spec["out_dir"])
        if newest is None:
            return
        self.adopt_run(spec["out_dir"])
        self.set_status(
            f"Cancelled; checkpoint {newest.name} kept in {spec['out_dir']}. "
            "Sample and Latent walk now use this run; Train again resumes it."
        )

    def adopt_run(self, run_dir) -> None:
        """Point the generator field at ``run_dir``, and open interpolation docks without one."""
        self.generator.value = str(run_dir)
        for widget in self._interpolation_widgets():
            if not widget.methods.forms["stylegan"].values().get("generator"):
                widget.use_generator(str(run_dir))

    def _interpolation_widgets(self) -> list:
        from ._interpolate_widget import InterpolateWidget

        return open_widgets(self.viewer, InterpolateWidget)

    def use_in_interpolation(self):
        """Hand the generator to the Slice interpolation dock (opened if needed); return it."""
        generator = read_widget(self.generator_spec, self.generator)
        from ._interpolate_widget import InterpolateWidget

        widgets = self._interpolation_widgets()
        try:  # the open dock (shown if hidden), or one opened as the Plugins menu does
            first = open_dock(self.viewer, InterpolateWidget, INTERPOLATION_DOCK)
        except Exception as error:  # noqa: BLE001 - e.g. no window (headless viewer)
            self.show_error(error)
            return None
        widgets = widgets or [first]
        for widget in widgets:
            if generator:
                widget.use_generator(generator)
            else:
                widget.methods.method = "stylegan"
                widget.methods.form.set_values({"generator": None})
        self.set_status(
            f"Slice interpolation now uses {generator or 'the embedded generator'} "
            "(method stylegan)."
        )
        return widgets[0]
