"""Regenerate the screenshots in docs/images from the real plugin (needs a display).

Run under a virtual screen:  ``xvfb-run -a -s "-screen 0 1920x1080x24" python docs/make_screenshots.py``
(``--only progress_eta.png,all_docks.png`` retakes some pictures; the expensive ones that
no other picture needs, e.g. the learned engine's, are then skipped; ``--only task-docks``
retakes the pictures of the four registry-built task docks: Generate slices, Automatic
mask, Train a model, Sample a model).
Jobs run synchronously (``NAPARI_SCIGEN_NOTHREADS=1``) so each picture shows a finished
state; the progress picture is taken from inside a running job. The DiffEdit and
ControlNet pictures use the tiny random Stable Diffusion test models of
``tests/tiny_sd.py`` (built in a temporary folder in seconds), so their outputs are noise.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("NAPARI_SCIGEN_NOTHREADS", "1")

IMAGES = Path(__file__).resolve().parent / "images"
TESTS = Path(__file__).resolve().parents[1] / "tests"
#: Window size of the dock pictures (the all-docks picture uses the whole 1920 x 1080 screen).
WINDOW = (1500, 950)
#: The pictures of the registry-built task docks (``--only task-docks`` takes these four).
TASK_DOCK_PICTURES = (
    "generate_slices_dock.png",
    "automatic_mask_dock.png",
    "train_model_dock.png",
    "sample_model_dock.png",
)
#: Largest file a picture may be; a larger one is stored with a 256-colour palette.
MAX_BYTES = 300_000


def _settle(rounds: int = 20) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()


def _dock_of(widget):
    """The QDockWidget holding ``widget``."""
    from qtpy.QtWidgets import QDockWidget

    while not isinstance(widget, QDockWidget):
        widget = widget.parent()
    return widget


def _dock(viewer, widget, name: str, docks: list):
    """Dock ``widget`` alone on the right: the docks of earlier pictures are hidden."""
    for dock in docks:
        dock.hide()
    docks.append(viewer.window.add_dock_widget(widget, name=name, area="right"))
    return widget


def _show_only(viewer, *layers) -> None:
    """Hide every layer but ``layers`` and select the first of them."""
    for layer in viewer.layers:
        layer.visible = layer in layers
    viewer.layers.selection.active = layers[0]


#: Pictures to write (``None``: all), from ``--only``.
ONLY: set[str] | None = None


def _wanted(*names: str) -> bool:
    return ONLY is None or any(name in ONLY for name in names)


def _fit(viewer, layer, fill: float = 0.9) -> None:
    """Zoom onto ``layer`` alone (``reset_view`` fits every layer, hidden ones too)."""
    _settle()
    viewer.reset_view()
    whole = np.asarray(viewer.layers.extent.world, dtype=float)[:, -2:]
    own = np.asarray(layer.extent.world, dtype=float)[:, -2:]
    viewer.camera.center = tuple((own[0] + own[1]) / 2)
    ratio = (whole[1] - whole[0]) / np.maximum(own[1] - own[0], 1e-9)
    viewer.camera.zoom = viewer.camera.zoom * float(ratio.min()) * fill


def _shoot(viewer, name: str, written: list) -> None:
    if not _wanted(name):
        return
    _settle()
    viewer.status = "Ready"  # not the stale text of an earlier picture's layer
    _settle()
    written.append(IMAGES / name)
    viewer.screenshot(str(written[-1]), canvas_only=False)
    _compact(written[-1])


def _compact(path: Path) -> None:
    """Keep ``path`` under :data:`MAX_BYTES`: re-save it optimised, then with a palette.

    The pictures are mostly grey: a 256-colour palette keeps them readable.
    """
    from PIL import Image

    if path.stat().st_size <= MAX_BYTES:
        return
    with Image.open(path) as picture:
        rgb = picture.convert("RGB")
    rgb.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main() -> list[Path]:
    import napari

    from napari_scigen._qt._base import EngineWidget

    EngineWidget._save_hint_shown = True  # the one-time save hint would cover the pictures
    IMAGES.mkdir(exist_ok=True)
    written: list[Path] = []
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    layers = viewer.open_sample("napari-scigen", "rock")
    image = layers[0]
    z = image.data.shape[0] // 2
    viewer.dims.set_point(0, z * image.scale[0])
    docks: list = []
    mask = _mask_picture(viewer, image, z, docks, written)
    if _wanted("inpaint_result.png"):
        _inpaint_picture(viewer, image, mask, docks, written)
    interpolated = _interpolate_picture(viewer, image, z, docks, written)
    if _wanted("learned_uncertainty.png"):
        _learned_picture(viewer, image, z, docks, written)
    if _wanted("progress_eta.png"):
        _progress_picture(viewer, image, docks, written)
    if _wanted("metrics_table.png"):
        _metrics_picture(viewer, image, interpolated, docks, written)
    if _wanted("stylegan_widget.png"):
        _stylegan_picture(viewer, image, docks, written)
    if _wanted("diffedit_widget.png", "controlnet_widget.png"):
        with tempfile.TemporaryDirectory(prefix="napari-scigen-tiny-sd-") as tiny_dir:
            sd, controlnet = _tiny_models(Path(tiny_dir))
            _diffedit_picture(viewer, image, mask, sd, z, docks, written)
            _controlnet_picture(viewer, image, sd, controlnet, docks, written)
    if _wanted("edit_widget.png"):
        with tempfile.TemporaryDirectory(prefix="napari-scigen-tiny-ip2p-") as tiny_dir:
            _edit_picture(viewer, image, mask, Path(tiny_dir), z, docks, written)
    if _wanted(*TASK_DOCK_PICTURES):
        with tempfile.TemporaryDirectory(prefix="napari-scigen-task-docks-") as tiny_dir:
            _task_dock_pictures(viewer, image, z, Path(tiny_dir), docks, written)
    viewer.close()
    if _wanted("dock_pair.png"):
        _dock_pair_picture(written)
    if _wanted("all_docks.png"):
        _all_docks_picture(written)
    return written


def _mask_picture(viewer, image, z, docks, written):
    from napari_scigen._qt._mask_widget import MaskWidget

    mask_widget = _dock(viewer, MaskWidget(viewer), "Mask painting", docks)
    mask_widget.image_picker.value = image.name
    mask = mask_widget.create_mask()
    data = np.asarray(mask.data).copy()
    yy, xx = np.mgrid[: data.shape[1], : data.shape[2]]
    data[z - 2 : z + 3][:, (yy - 110) ** 2 + (xx - 140) ** 2 <= 22**2] = 1
    mask.data = data
    _shoot(viewer, "mask_painting.png", written)
    return mask


def _inpaint_picture(viewer, image, mask, docks, written) -> None:
    from napari_scigen._qt._inpaint_widget import InpaintWidget

    inpaint = _dock(viewer, InpaintWidget(viewer), "Inpainting", docks)
    inpaint.image_picker.value = image.name  # the mask picker follows: "<image> mask"
    assert inpaint.mask_picker.value == mask.name, inpaint.mask_picker.value
    inpaint.run()
    _show_only(viewer, inpaint.new_layers[0])
    _shoot(viewer, "inpaint_result.png", written)


def _interpolate_picture(viewer, image, z, docks, written):
    from napari_scigen._qt._interpolate_widget import InterpolateWidget

    interpolate = _dock(viewer, InterpolateWidget(viewer), "Slice interpolation", docks)
    interpolate.image_picker.value = image.name
    interpolate.method.value = "flow"
    interpolate.missing.value = f"{z - 1}-{z + 1}"
    interpolate.run()
    interpolated = interpolate.new_layers[0]
    _show_only(viewer, interpolated)
    _shoot(viewer, "interpolate_result.png", written)
    return interpolated


def _learned_picture(viewer, image, z, docks, written) -> None:
    """The ``learned`` engine with its uncertainty layer (a short training budget)."""
    from napari_scigen._qt._interpolate_widget import InterpolateWidget

    learned = _dock(viewer, InterpolateWidget(viewer), "Slice interpolation (learned)", docks)
    learned.image_picker.value = image.name
    learned.method.value = "learned"
    learned.methods.form["train_steps"].value = 60  # the default is 600; a picture needs few
    # isolated missing slices: kept slices can be held out at the same gap (a run of
    # missing slices cannot be self-checked, so learned would fill it with linear)
    learned.missing.value = f"{z - 8}, {z - 4}, {z}, {z + 4}, {z + 8}"
    learned.run()
    result, uncertainty = learned.new_layers
    _show_only(viewer, result, uncertainty)
    _shoot(viewer, "learned_uncertainty.png", written)
    for layer in learned.new_layers:
        viewer.layers.remove(layer)


def _progress_picture(viewer, image, docks, written) -> None:
    """A flow job over many gaps, photographed while it runs (bar, time left, activity)."""
    from napari_scigen._qt._interpolate_widget import InterpolateWidget

    running = _dock(viewer, InterpolateWidget(viewer), "Slice interpolation (running)", docks)
    running.image_picker.value = image.name
    running.method.value = "flow"
    running.missing.value = ", ".join(str(index) for index in range(2, 60, 4))
    original = running._on_progress
    events = []

    def photograph(event) -> None:
        original(event)
        events.append(event)
        if len(events) == 8:  # a few gaps in: the time left is estimated
            viewer.window._qt_window._activity_dialog.show()
            _shoot(viewer, "progress_eta.png", written)

    running._on_progress = photograph
    _show_only(viewer, image)
    running.run()
    viewer.window._qt_window._activity_dialog.hide()
    for layer in running.new_layers:
        viewer.layers.remove(layer)


def _metrics_picture(viewer, image, generated, docks, written) -> None:
    from napari_scigen._qt._metrics_widget import MetricsWidget

    metrics = _dock(viewer, MetricsWidget(viewer), "Metrics", docks)
    metrics.reference_picker.value = image.name
    metrics.generated_picker.value = generated.name
    for name, box in metrics.metric_boxes.items():
        box.value = name in ("ssim", "psnr", "gmsd")
    metrics.run()  # region: "rebuilt slices only", the default for a rebuilt layer
    _show_only(viewer, metrics.map_layers[0], generated)
    _settle()  # the wider dock narrows the canvas: fit the whole map into it
    viewer.reset_view()
    _shoot(viewer, "metrics_table.png", written)


def _stylegan_picture(viewer, image, docks, written) -> None:
    from napari_scigen._qt._stylegan_widget import StyleGANWidget

    stylegan = _dock(viewer, StyleGANWidget(viewer), "StyleGAN", docks)
    stylegan.volume_picker.value = image.name  # samples are placed in its world
    stylegan.sample_form["count"].value = 8
    stylegan.start("sample")
    samples = stylegan.last_layer
    _show_only(viewer, samples)
    scale, translate = np.asarray(samples.scale), np.asarray(samples.translate)
    viewer.dims.set_point(0, translate[0] + 3 * scale[0])
    size = np.asarray(samples.data.shape[-2:]) * scale[-2:]
    viewer.camera.center = tuple(translate[-2:] + size / 2)
    viewer.camera.zoom = 8 / float(scale[-1])  # a 64-px sample fills the canvas
    _shoot(viewer, "stylegan_widget.png", written)
    viewer.reset_view()


def _tiny_models(root: Path) -> tuple[Path, Path]:
    """Save a tiny random SD 1.x pipeline and ControlNet under ``root`` (tests/tiny_sd.py)."""
    sys.path.insert(0, str(TESTS))
    from tiny_sd import build_tiny_controlnet, build_tiny_sd_pipeline

    sd = build_tiny_sd_pipeline(root / "tiny-sd15")
    return sd, build_tiny_controlnet(root / "tiny-controlnet", sd)


def _diffedit_picture(viewer, image, mask, sd, z, docks, written) -> None:
    from napari_scigen._qt._diffedit_widget import DiffEditWidget

    diffedit = _dock(viewer, DiffEditWidget(viewer), "DiffEdit", docks)
    diffedit.image_picker.value = image.name  # the mask picker follows: "<image> mask"
    fields = diffedit.fields
    fields["model"].value, fields["local_files_only"].value = str(sd), True
    fields["prompt"].value = "a large empty pore"
    fields["steps"].value, fields["resolution"].value, fields["context"].value = 10, 64, 16
    viewer.dims.set_point(0, z * image.scale[0])  # slices "current": the one shown
    diffedit.run()
    edited = diffedit.new_layers[0]
    _show_only(viewer, edited, mask)
    viewer.layers.move(viewer.layers.index(mask), len(viewer.layers))  # outline on top
    mask.contour = 2
    _shoot(viewer, "diffedit_widget.png", written)
    mask.contour = 0


def _edit_picture(viewer, image, mask, root, z, docks, written) -> None:
    """The registry-driven Text-guided editing dock with InstructPix2Pix (a tiny random
    test model, like the DiffEdit picture: the edited disc is noise)."""
    sys.path.insert(0, str(TESTS))
    from napari_scigen._qt._edit_widget import EditWidget
    from tiny_sd_more import build_tiny_instructpix2pix_pipeline

    model = build_tiny_instructpix2pix_pipeline(root / "tiny-instructpix2pix")
    edit = _dock(viewer, EditWidget(viewer), "Text-guided editing", docks)
    edit.image_picker.value = image.name  # the mask picker follows: "<image> mask"
    edit.methods.method = "instructpix2pix"
    edit.methods.form.set_values(
        {
            "model": str(model),
            "local_files_only": True,
            "prompt": "make the pores larger",
            "steps": 10,
            "resolution": 64,
            "context": 16,
        }
    )
    viewer.dims.set_point(0, z * image.scale[0])  # slices "current": the one shown
    edit.run()
    edited = edit.new_layers[0]
    _show_only(viewer, edited, mask)
    viewer.layers.move(viewer.layers.index(mask), len(viewer.layers))  # outline on top
    mask.contour = 2
    _shoot(viewer, "edit_widget.png", written)
    mask.contour = 0


def _controlnet_picture(viewer, image, sd, controlnet_dir, docks, written) -> None:
    from napari_scigen._qt._controlnet_widget import ControlNetWidget

    controlnet = _dock(viewer, ControlNetWidget(viewer), "ControlNet", docks)
    controlnet.image_picker.value = image.name
    controlnet.mask_picker.value = None  # generate new slices, do not regenerate the mask
    fields = controlnet.fields
    fields["model"].value, fields["local_files_only"].value = str(sd), True
    fields["controlnet_model"].value = str(controlnet_dir)
    # context is only used (and shown) with a mask, but must fit the tiny 64 px model size
    fields["steps"].value, fields["resolution"].value, fields["context"].value = 10, 64, 16
    controlnet.live_preview.value = True
    controlnet.run()
    generated = controlnet.new_layers[0]
    # one above the other: the image with its Canny preview on top, the generated slice
    viewer.layers.move(viewer.layers.index(controlnet.preview_layer), 1)
    viewer.layers.move(viewer.layers.index(image), 0)
    _show_only(viewer, controlnet.preview_layer, image, generated)
    viewer.grid.stride, viewer.grid.shape, viewer.grid.spacing = 2, (2, 1), 0.03
    viewer.grid.enabled = True
    viewer.reset_view()
    _shoot(viewer, "controlnet_widget.png", written)
    viewer.grid.enabled = False


def _task_dock_pictures(viewer, image, z, root, docks, written) -> None:
    """The four registry-built task docks, each after a real run.

    Generate slices (ControlNet) and Automatic mask (DiffEdit) use the tiny random test
    models of ``tests/tiny_sd.py``, so their outputs are noise; Train a model trains a
    small DCGAN for 60 steps on the sample volume; Sample a model draws 8 slices from the
    embedded StyleGAN generator.
    """
    sys.path.insert(0, str(TESTS))
    from napari_scigen._qt._task_docks import (
        AutoMaskWidget,
        GenerateWidget,
        SampleWidget,
        TrainWidget,
    )
    from tiny_sd import build_tiny_controlnet, build_tiny_diffedit_pipeline, build_tiny_sd_pipeline

    tiny = {"local_files_only": True, "steps": 10, "resolution": 64, "context": 16, "device": "cpu"}
    if _wanted("generate_slices_dock.png"):
        sd = build_tiny_sd_pipeline(root / "tiny-sd15")
        controlnet = build_tiny_controlnet(root / "tiny-controlnet", sd)
        generate = _dock(viewer, GenerateWidget(viewer), "Generate slices", docks)
        generate.image_picker.value = image.name
        generate.methods.method = "controlnet"
        generate.methods.form.set_values(
            {**tiny, "model": str(sd), "controlnet_model": str(controlnet), "seed": 3}
        )
        generate.slices.value = str(z)
        generate.run()
        generated = generate.new_layers[0]
        viewer.layers.move(viewer.layers.index(image), 0)
        _show_only(viewer, generated, image)
        viewer.grid.stride, viewer.grid.shape, viewer.grid.spacing = 1, (1, 2), 0.03
        viewer.grid.enabled = True
        viewer.dims.set_point(0, z * image.scale[0])
        viewer.reset_view()
        _shoot(viewer, "generate_slices_dock.png", written)
        viewer.grid.enabled = False
    if _wanted("automatic_mask_dock.png"):
        diffedit = build_tiny_diffedit_pipeline(root / "tiny-diffedit")
        automask = _dock(viewer, AutoMaskWidget(viewer), "Automatic mask", docks)
        automask.image_picker.value = image.name
        automask.methods.method = "diffedit"
        automask.methods.form.set_values(
            {**tiny, "model": str(diffedit), "prompt": "a large empty pore", "seed": 1}
        )
        automask.slices.value = str(z)
        automask.run()
        found = viewer.layers[f"{image.name} diffedit mask 1"]
        _show_only(viewer, found, image)
        viewer.dims.set_point(0, z * image.scale[0])
        viewer.reset_view()
        _shoot(viewer, "automatic_mask_dock.png", written)
    if _wanted("train_model_dock.png"):
        train = _dock(viewer, TrainWidget(viewer), "Train a model", docks)
        train.volume_picker.value = image.name
        run_dir = Path(tempfile.gettempdir()) / "scigen-runs" / "rock-dcgan"  # a short name
        shutil.rmtree(run_dir.parent, ignore_errors=True)  # a new run, not a resumed one
        train.out_dir.value = str(run_dir)
        train.methods.method = "dcgan"
        train.methods.form.set_values(
            {
                "train_steps": 60,
                "resolution": 32,
                "batch_size": 8,
                "channels": 16,
                "z_dim": 32,
                "sample_every": 20,
                "device": "cpu",
            }
        )
        try:
            train.run()
        finally:
            shutil.rmtree(run_dir.parent, ignore_errors=True)
        preview = viewer.layers["dcgan preview"]
        _show_only(viewer, preview)
        _fit(viewer, preview)
        _shoot(viewer, "train_model_dock.png", written)
    if _wanted("sample_model_dock.png"):
        sample = _dock(viewer, SampleWidget(viewer), "Sample a model", docks)
        sample.methods.method = "stylegan"  # the embedded generator
        sample.methods.form.set_values({"count": 8, "seed": 0, "device": "cpu"})
        sample.run()
        samples = viewer.layers["stylegan samples 1"]
        _show_only(viewer, samples)
        viewer.dims.set_point(0, 3)
        _fit(viewer, samples)
        _shoot(viewer, "sample_model_dock.png", written)


def _dock_pair_picture(written) -> None:
    """Mask painting and Inpainting opened together at 1920 x 1080: both fit, every button
    shows (the docks share the column by what each needs)."""
    import napari

    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1920, 1080)
    viewer.open_sample("napari-scigen", "rock")
    for name in ("Mask painting", "Inpainting"):
        viewer.window.add_plugin_dock_widget("napari-scigen", name)
        _settle(5)
    window.resize(1920, 1080)
    _settle()
    _shoot(viewer, "dock_pair.png", written)
    viewer.close()


def _all_docks_picture(written) -> None:
    """Every dock of the plugin at once in a 1920 x 1080 window: it still fits."""
    import napari
    import yaml

    manifest = Path(__file__).resolve().parents[1] / "src" / "napari_scigen" / "napari.yaml"
    names = [
        w["display_name"] for w in yaml.safe_load(manifest.read_text())["contributions"]["widgets"]
    ]
    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1920, 1080)
    viewer.open_sample("napari-scigen", "rock")
    for name in names:
        viewer.window.add_plugin_dock_widget("napari-scigen", name)
        _settle(5)
    window.resize(1920, 1080)
    _settle()
    size = (window.width(), window.height())
    assert size[0] <= 1920 and size[1] <= 1080, f"the window grew to {size}"
    _shoot(viewer, "all_docks.png", written)
    viewer.close()


if __name__ == "__main__":
    if "--only" in sys.argv:
        ONLY = set(sys.argv[sys.argv.index("--only") + 1].split(","))
        if "task-docks" in ONLY:
            ONLY |= set(TASK_DOCK_PICTURES)
    for path in main():
        print("wrote", path)
