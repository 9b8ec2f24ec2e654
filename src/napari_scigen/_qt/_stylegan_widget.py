"""Dock widget: train a StyleGAN2 on a volume, sample new slices, walk the latent space.

Three tabs share one Run/Cancel/progress bar; the Run button does what the shown tab
says:

* **Train** runs :func:`~napari_scigen.engines.stylegan.train.run_train_stylegan` on
  the slices of a volume into a run folder (checkpoints are the engine's job; a run
  resumes from the newest one). Preview grids of samples appear, while training
  runs, in the image layer ``"stylegan preview"``.
* **Sample** generates ``n`` new slices with
  :func:`~napari_scigen.engines.stylegan.sample.run_sample_slices`.
* **Latent walk** renders the frames between the latents of two seeds as a stack
  layer to scroll through.

Sample and Latent walk use the generator named above the tabs: empty for the
embedded default, or a run folder, checkpoint or exported ``.safetensors``. After
training, it points at the new run folder. Slice interpolation with StyleGAN lives
in the Slice interpolation widget.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    SpinBox,
)
from qtpy.QtWidgets import QTabWidget

from .._napari.layers import layer_metadata, next_layer_name
from ..core.progress import CancelToken, Progress, check_cancelled
from ..core.result import EngineResult
from ._base import EngineWidget, LayerPicker, layer_data
from ._diffedit_widget import DEVICES, seed_box

#: Name of the layer showing training previews.
PREVIEW_LAYER = "stylegan preview"
#: Tabs, in order: (action, Run button text).
ACTIONS = (("train", "Train"), ("sample", "Sample"), ("walk", "Walk"))
RESOLUTIONS = (16, 32, 64, 128, 256, 512)
EMBEDDED_TEXT = "embedded default"


# ---------------------------------------------------------------------------------------
# Process guard
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# Worker-side jobs (no Qt)
# ---------------------------------------------------------------------------------------


def train_job(
    volume: np.ndarray,
    params,
    config_kwargs: dict[str, int],
    *,
    out_dir: Path,
    resume: bool,
    cancel: CancelToken | None = None,
):
    """Train, resuming with the newest checkpoint's architecture when there is one.

    Yields the training :class:`Progress` events and returns the ``TrainResult``.
    """
    from ..engines.stylegan.checkpoint import latest_checkpoint, read_metadata
    from ..engines.stylegan.networks import StyleGANConfig
    from ..engines.stylegan.train import run_train_stylegan

    config = StyleGANConfig(**config_kwargs)
    latest = latest_checkpoint(out_dir) if resume and out_dir.is_dir() else None
    if latest is not None:
        saved = StyleGANConfig.from_dict(read_metadata(latest)["config"])
        if saved != config:
            config = saved
            yield Progress(
                0, params.steps, f"resuming {latest.name} with its architecture ({saved})"
            )
    return (
        yield from run_train_stylegan(
            volume, params, config, out_dir=out_dir, resume=resume, cancel=cancel
        )
    )


def latent_walk_job(
    generator: str | None,
    seed_a: int,
    seed_b: int,
    frames: int,
    *,
    truncation_psi: float,
    slerp: bool,
    device: str,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EngineResult]:
    """:func:`~napari_scigen.engines.stylegan.sample.latent_walk` as an engine generator.

    Returns an :class:`EngineResult` whose ``data`` is the float32 ``(frames, R, R)``
    stack in ``[0, 1]``.
    """
    from ..core.provenance import make_provenance
    from ..engines.stylegan.default import DEFAULT_NAME
    from ..engines.stylegan.sample import latent_walk

    check_cancelled(cancel)
    yield Progress(0, 1, f"rendering {frames} frames from seed {seed_a} to seed {seed_b}")
    data = latent_walk(
        generator,
        seed_a,
        seed_b,
        frames,
        truncation_psi=truncation_psi,
        slerp=slerp,
        device=device,
    )
    check_cancelled(cancel)
    yield Progress(1, 1, "done")
    provenance = make_provenance(
        "latent-walk-stylegan",
        {
            "seed_a": seed_a,
            "seed_b": seed_b,
            "frames": frames,
            "truncation_psi": truncation_psi,
            "slerp": slerp,
            "noise_mode": "const",
            "device": device,
        },
        model=generator or f"embedded:{DEFAULT_NAME}",
        seed=[seed_a, seed_b],
    )
    return EngineResult(data=data, provenance=provenance)


# ---------------------------------------------------------------------------------------
# Widget
# ---------------------------------------------------------------------------------------


class StyleGANWidget(EngineWidget):
    """Train a StyleGAN2 on a volume, sample new slices and walk its latent space."""

    engine_name = "stylegan"
    run_text = "Train"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self.preview_layer = None
        self.last_layer = None
        super().__init__(napari_viewer)
        self.tabs.currentChanged.connect(self._on_tab)
        self._on_tab(self.tabs.currentIndex())

    def build_form(self) -> None:
        from ..engines.stylegan.train import TrainParams

        train_defaults = TrainParams()
        viewer = self.viewer
        # Train tab
        self.volume_picker = LayerPicker(viewer, napari.layers.Image, label="volume")
        self.out_dir = FileEdit(mode="d", value="", label="run folder")
        self.out_dir.tooltip = "checkpoints go here; an existing run continues (resume)"
        self.steps = SpinBox(value=2000, min=1, max=10_000_000, label="total steps")
        self.steps.tooltip = "total optimisation steps; a resumed run continues up to this"
        self.resolution = ComboBox(choices=list(RESOLUTIONS), value=64, label="resolution")
        self.batch_size = SpinBox(value=train_defaults.batch_size, min=1, max=256, label="batch")
        self.resume = CheckBox(value=True, text="resume from the newest checkpoint")
        self.latent_dim = SpinBox(value=128, min=4, max=1024, label="latent size")
        self.mapping_layers = SpinBox(value=4, min=1, max=16, label="mapping layers")
        self.channel_base = SpinBox(value=4096, min=16, max=65536, step=16, label="channel base")
        self.channel_max = SpinBox(value=128, min=4, max=1024, label="channel max")
        self.sample_every = SpinBox(value=100, min=1, max=1_000_000, label="preview every")
        self.checkpoint_every = SpinBox(
            value=train_defaults.checkpoint_every, min=1, max=1_000_000, label="checkpoint every"
        )
        self.augment = CheckBox(value=train_defaults.augment, text="augment (small data sets)")
        self.train_seed = seed_box(value=train_defaults.seed)
        train_tab = Container(
            widgets=[
                self.volume_picker,
                self.out_dir,
                self.steps,
                self.resolution,
                self.batch_size,
                self.resume,
                self.latent_dim,
                self.mapping_layers,
                self.channel_base,
                self.channel_max,
                self.sample_every,
                self.checkpoint_every,
                self.augment,
                self.train_seed,
            ]
        )
        # Sample tab
        self.n_samples = SpinBox(value=8, min=1, max=10_000, label="slices")
        self.sample_seed = seed_box()
        self.truncation = FloatSpinBox(
            value=0.7, min=0.0, max=2.0, step=0.05, label="truncation psi"
        )
        self.truncation.tooltip = "1: no truncation; lower: more typical, less varied"
        sample_tab = Container(widgets=[self.n_samples, self.sample_seed, self.truncation])
        # Latent walk tab
        self.seed_a = seed_box(label="seed A", value=0)
        self.seed_b = seed_box(label="seed B", value=1)
        self.frames = SpinBox(value=16, min=2, max=10_000, label="frames")
        self.walk_truncation = FloatSpinBox(
            value=0.7, min=0.0, max=2.0, step=0.05, label="truncation psi"
        )
        self.slerp = CheckBox(value=True, text="spherical interpolation of z")
        walk_tab = Container(
            widgets=[self.seed_a, self.seed_b, self.frames, self.walk_truncation, self.slerp]
        )
        # Shared by Sample and Latent walk, and the device for all
        self.generator = LineEdit(value="", label="generator")
        self.generator.tooltip = (
            f"empty = {EMBEDDED_TEXT}; or a run folder, checkpoint folder or exported .safetensors"
        )
        self.device = ComboBox(choices=list(DEVICES), value="auto", label="device")
        self.form.extend([self.generator, self.device])
        self.tabs = QTabWidget()
        for tab, (_, title) in zip((train_tab, sample_tab, walk_tab), ACTIONS, strict=True):
            # short tabs keep their rows together at the top instead of spreading out to
            # the height of the tallest (Train) tab
            tab.native.layout().addStretch(1)
            self.tabs.addTab(tab.native, title if title != "Walk" else "Latent walk")
        self.form.native.layout().addWidget(self.tabs)

    def _on_tab(self, index: int) -> None:
        action, text = ACTIONS[index]
        self.run_button.setText(text)
        self.generator.visible = action != "train"

    @property
    def action(self) -> str:
        """``"train"``, ``"sample"`` or ``"walk"``: what Run does (the shown tab)."""
        return ACTIONS[self.tabs.currentIndex()][0]

    def start(self, action: str):
        """Show the tab of ``action`` and run it."""
        names = [name for name, _ in ACTIONS]
        if action not in names:
            raise ValueError(f"unknown StyleGAN action {action!r}; choose from {names}")
        self.tabs.setCurrentIndex(names.index(action))
        return self.run()

    # -- snapshot / job ----------------------------------------------------------------
    def _generator_path(self) -> str | None:
        text = self.generator.value.strip()
        if not text or text.lower() == EMBEDDED_TEXT:
            return None
        path = Path(text).expanduser()
        if not path.exists():
            raise ValueError(f"generator {path} does not exist (leave empty for the embedded one)")
        return str(path.resolve())

    def snapshot(self) -> dict[str, Any]:
        action = self.action
        spec: dict[str, Any] = {"action": action, "device": self.device.value}
        if action == "train":
            from ..engines.stylegan.train import TrainParams

            layer = self.volume_picker.layer
            if layer is None:
                raise ValueError("choose a volume (3D image layer) to train on")
            volume = layer_data(layer)
            if volume.ndim != 3:
                raise ValueError(f"'{layer.name}' is {volume.ndim}D; training needs a 3D volume")
            out_text = self.out_dir.line_edit.value.strip()
            if not out_text:
                raise ValueError("choose a run folder for the checkpoints")
            latent = int(self.latent_dim.value)
            spec.update(
                source_layer=layer,
                volume=volume,
                out_dir=Path(out_text).expanduser(),
                resume=bool(self.resume.value),
                params=TrainParams(
                    steps=int(self.steps.value),
                    batch_size=int(self.batch_size.value),
                    augment=bool(self.augment.value),
                    sample_every=int(self.sample_every.value),
                    checkpoint_every=int(self.checkpoint_every.value),
                    seed=int(self.train_seed.value),
                    device=self.device.value,
                ),
                config={
                    "resolution": int(self.resolution.value),
                    "z_dim": latent,
                    "w_dim": latent,
                    "mapping_layers": int(self.mapping_layers.value),
                    "channel_base": int(self.channel_base.value),
                    "channel_max": int(self.channel_max.value),
                },
            )
        elif action == "sample":
            spec.update(
                generator=self._generator_path(),
                n=int(self.n_samples.value),
                seed=int(self.sample_seed.value),
                truncation=float(self.truncation.value),
            )
        else:
            spec.update(
                generator=self._generator_path(),
                seed_a=int(self.seed_a.value),
                seed_b=int(self.seed_b.value),
                frames=int(self.frames.value),
                truncation=float(self.walk_truncation.value),
                slerp=bool(self.slerp.value),
            )
        return spec

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        if spec["action"] == "train":
            return train_job(
                spec["volume"],
                spec["params"],
                spec["config"],
                out_dir=spec["out_dir"],
                resume=spec["resume"],
                cancel=cancel,
            )
        if spec["action"] == "sample":
            from ..engines.stylegan.sample import run_sample_slices

            return run_sample_slices(
                spec["generator"],
                spec["n"],
                spec["seed"],
                spec["truncation"],
                device=spec["device"],
                cancel=cancel,
            )
        return latent_walk_job(
            spec["generator"],
            spec["seed_a"],
            spec["seed_b"],
            spec["frames"],
            truncation_psi=spec["truncation"],
            slerp=spec["slerp"],
            device=spec["device"],
            cancel=cancel,
        )

    # -- progress and results (GUI thread) ---------------------------------------------
    def _on_progress(self, event: Progress) -> None:
        super()._on_progress(event)
        if event.preview is not None:
            self.show_preview(event.preview)

    def show_preview(self, grid: np.ndarray):
        """Show a training preview grid in the ``"stylegan preview"`` layer."""
        grid = np.asarray(grid, dtype=np.float32)
        layer = self.preview_layer
        if layer is not None and layer in self.viewer.layers and layer.ndim == grid.ndim:
            layer.data = grid
            return layer
        self.preview_layer = self.viewer.add_image(
            grid, name=PREVIEW_LAYER, colormap="gray", contrast_limits=(0.0, 1.0)
        )
        return self.preview_layer

    def _on_result(self, spec: dict[str, Any], result) -> None:
        super()._on_result(spec, result)
        if spec["action"] == "train":
            self.set_status(
                f"Trained {result.step} steps; checkpoint {result.checkpoint}. "
                "Sample and Latent walk now use this run."
            )

    def on_result(self, spec: dict[str, Any], result) -> None:
        if spec["action"] == "train":
            if result.preview is not None:
                self.show_preview(result.preview)
            self.generator.value = str(spec["out_dir"])
            return
        stem = "samples" if spec["action"] == "sample" else "walk"
        name = next_layer_name([layer.name for layer in self.viewer.layers], "stylegan", stem)
        data = result.data
        finite = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.floating) else data
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        layer = self.viewer.add_image(
            data,
            name=name,
            metadata=layer_metadata(result.provenance),
            contrast_limits=(low, high if high > low else low + 1.0),
        )
        self.last_layer = layer
