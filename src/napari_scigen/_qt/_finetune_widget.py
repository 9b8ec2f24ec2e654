"""Dock widget: LoRA fine-tuning of Stable Diffusion on the chosen volume (``finetune-sd``).

Trains an adapter on tiles of the volume with a domain prompt through
``api.train_job(..., method="sd-lora")``; the fields are built from
:class:`~napari_scigen.engines.sd.finetune_params.SDLoRATrainParams` (the same
declarations the ``napari-scigen finetune-sd`` flags come from). The adapter folder is
then given to any Stable Diffusion widget's ``adapter`` field. Running again on the same
folder resumes from its newest checkpoint. The preview made with the adapter at the end
appears as the image layer ``"sd-lora preview"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, FileEdit

from .. import api
from ..core.progress import CancelToken
from ..engines.registry import get_engine
from ._base import EngineWidget, LayerPicker, layer_data
from ._fields import ParamsForm

#: Name of the layer showing the preview made with the trained adapter.
PREVIEW_LAYER = "sd-lora preview"


class FinetuneWidget(EngineWidget):
    """Fine-tune Stable Diffusion with LoRA on a volume; writes an adapter folder."""

    engine_name = "sd-lora"
    run_text = "Fine-tune"

    def build_form(self) -> None:
        self.volume_picker = LayerPicker(self.viewer, napari.layers.Image, label="volume")
        self.volume_picker.tooltip = "the volume whose slices the adapter is trained on"
        self.out_dir = FileEdit(mode="d", value="", label="adapter folder")
        self.out_dir.line_edit.value = ""
        self.out_dir.tooltip = (
            "the adapter is written here (pytorch_lora_weights.safetensors, adapter.json, "
            "checkpoints); an existing run continues from its newest checkpoint"
        )
        self.resume = CheckBox(value=True, text="resume from the newest checkpoint")
        self.resume.tooltip = (
            "continue the run in the folder (same adapter settings); off: start over"
        )
        self.fields = ParamsForm(get_engine("train", "sd-lora").params_class)
        self.form.extend([self.volume_picker, self.out_dir, self.resume])
        self.add_section(self.fields.native)

    def snapshot(self) -> dict[str, Any]:
        source = self.volume_picker.layer
        if source is None:
            raise ValueError("choose a volume (3D image layer) to train on")
        volume = layer_data(source)
        if volume.ndim != 3:
            raise ValueError(f"'{source.name}' is {volume.ndim}D; fine-tuning needs a 3D volume")
        out_text = str(self.out_dir.line_edit.value).strip()
        if not out_text:
            raise ValueError("choose an adapter folder")
        return {
            "source_layer": source,
            "volume": volume,
            "out_dir": Path(out_text).expanduser(),
            "resume": bool(self.resume.value),
            "params": self.fields.params(),
        }

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        return api.train_job(
            spec["volume"],
            out_dir=str(spec["out_dir"]),
            method="sd-lora",
            params=spec["params"],
            resume=spec["resume"],
            cancel=cancel,
        )

    def _on_progress(self, event) -> None:
        super()._on_progress(event)
        if event.preview is not None:
            self.show_preview(event.preview)

    def show_preview(self, image: np.ndarray):
        """Show the adapter's preview in the ``"sd-lora preview"`` layer."""
        from ._task_docks import show_preview

        return show_preview(self.viewer, PREVIEW_LAYER, image)

    def on_result(self, spec: dict[str, Any], result) -> None:
        self.show_preview(result.data)

    def _on_result(self, spec: dict[str, Any], result) -> None:
        super()._on_result(spec, result)
        losses = result.history.get("eval_loss", [])
        change = f" Held-out loss {losses[0]:.4f} -> {losses[-1]:.4f}." if len(losses) > 1 else ""
        self.set_status(
            f"Trained {result.step} steps; adapter in {spec['out_dir']} (give it to a Stable "
            f"Diffusion widget's adapter field).{change}"
        )
