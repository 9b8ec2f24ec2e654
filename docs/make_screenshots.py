"""Regenerate the screenshots in docs/images from the real plugin (needs a display).

Run under a virtual screen:  ``xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py``
Jobs run synchronously (``NAPARI_SCIGEN_NOTHREADS=1``) so each picture shows a finished state.
The DiffEdit and ControlNet pictures use the tiny random Stable Diffusion test models of
``tests/tiny_sd.py`` (built in a temporary folder in seconds), so their outputs are noise.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("NAPARI_SCIGEN_NOTHREADS", "1")

IMAGES = Path(__file__).resolve().parent / "images"
TESTS = Path(__file__).resolve().parents[1] / "tests"


def _settle(viewer, rounds: int = 20) -> None:
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


def _shoot(viewer, name: str, written: list) -> None:
    _settle(viewer)
    viewer.status = "Ready"  # not the stale text of an earlier picture's layer
    _settle(viewer)
    written.append(IMAGES / name)
    viewer.screenshot(str(written[-1]), canvas_only=False)


def main() -> list[Path]:
    import napari

    from napari_scigen._qt._inpaint_widget import InpaintWidget
    from napari_scigen._qt._interpolate_widget import InterpolateWidget
    from napari_scigen._qt._mask_widget import MaskWidget

    IMAGES.mkdir(exist_ok=True)
    written = []
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    layers = viewer.open_sample("napari-scigen", "rock")
    image = layers[0]
    z = image.data.shape[0] // 2
    viewer.dims.set_point(0, z * image.scale[0])

    mask_widget = MaskWidget(viewer)
    viewer.window.add_dock_widget(mask_widget, name="Mask painting", area="right")
    mask_widget.image_picker.value = image.name
    mask = mask_widget.create_mask()
    data = np.asarray(mask.data).copy()
    yy, xx = np.mgrid[: data.shape[1], : data.shape[2]]
    data[z - 2 : z + 3][:, (yy - 110) ** 2 + (xx - 140) ** 2 <= 22**2] = 1
    mask.data = data
    _settle(viewer)
    written.append(IMAGES / "mask_painting.png")
    viewer.screenshot(str(written[-1]), canvas_only=False)

    inpaint = InpaintWidget(viewer)
    viewer.window.add_dock_widget(inpaint, name="Classical inpainting", area="right")
    inpaint.image_picker.value, inpaint.mask_picker.value = image.name, mask.name
    inpaint.run()
    mask.visible = False
    image.visible = False
    _settle(viewer)
    written.append(IMAGES / "inpaint_result.png")
    viewer.screenshot(str(written[-1]), canvas_only=False)

    interpolate = InterpolateWidget(viewer)
    viewer.window.add_dock_widget(interpolate, name="Slice interpolation", area="right")
    interpolate.image_picker.value = image.name
    interpolate.method.value = "flow"
    interpolate.missing.value = f"{z - 1}-{z + 1}"
    interpolate.run()
    for layer in viewer.layers:
        layer.visible = layer.name.endswith("interpolate 1")
    _settle(viewer)
    written.append(IMAGES / "interpolate_result.png")
    viewer.screenshot(str(written[-1]), canvas_only=False)

    docks = [_dock_of(widget) for widget in (mask_widget, inpaint, interpolate)]
    interpolated = viewer.layers[-1]
    _metrics_picture(viewer, image, interpolated, docks, written)
    _stylegan_picture(viewer, docks, written)
    with tempfile.TemporaryDirectory(prefix="napari-scigen-tiny-sd-") as tiny_dir:
        sd, controlnet = _tiny_models(Path(tiny_dir))
        _diffedit_picture(viewer, image, mask, sd, z, docks, written)
        _controlnet_picture(viewer, image, sd, controlnet, docks, written)
    viewer.close()
    return written


def _metrics_picture(viewer, image, generated, docks, written) -> None:
    from napari_scigen._qt._metrics_widget import MetricsWidget

    metrics = _dock(viewer, MetricsWidget(viewer), "Metrics", docks)
    metrics.reference_picker.value = image.name
    metrics.generated_picker.value = generated.name
    metrics.mask_picker.value = None
    for name, box in metrics.metric_boxes.items():
        box.value = name in ("ssim", "psnr", "gmsd")
    metrics.run()
    _show_only(viewer, metrics.map_layers[0], generated)
    _shoot(viewer, "metrics_table.png", written)


def _stylegan_picture(viewer, docks, written) -> None:
    from napari_scigen._qt._stylegan_widget import StyleGANWidget

    stylegan = _dock(viewer, StyleGANWidget(viewer), "StyleGAN", docks)
    stylegan.sample_form["n"].value = 8
    stylegan.start("sample")
    samples = stylegan.last_layer
    _show_only(viewer, samples)
    viewer.dims.set_point(0, 3)
    viewer.scene.camera.center = (samples.data.shape[-2] / 2, samples.data.shape[-1] / 2)
    viewer.scene.camera.zoom = 8
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
    diffedit.image_picker.value, diffedit.mask_picker.value = image.name, mask.name
    fields = diffedit.fields
    fields["model"].value, fields["local_files_only"].value = str(sd), True
    fields["target_prompt"].value = "a large empty pore"
    fields["steps"].value, fields["resolution"].value, fields["context"].value = 10, 64, 16
    viewer.dims.set_point(0, z * image.scale[0])  # slices "current": the one shown
    diffedit.run()
    edited = viewer.layers[-1]
    _show_only(viewer, edited, mask)
    viewer.layers.move(viewer.layers.index(mask), len(viewer.layers))  # outline on top
    mask.contour = 2
    _shoot(viewer, "diffedit_widget.png", written)
    mask.contour = 0


def _controlnet_picture(viewer, image, sd, controlnet_dir, docks, written) -> None:
    from napari_scigen._qt._controlnet_widget import ControlNetWidget

    controlnet = _dock(viewer, ControlNetWidget(viewer), "ControlNet", docks)
    controlnet.image_picker.value = image.name
    controlnet.mask_picker.value = None
    fields = controlnet.fields
    fields["model"].value, fields["local_files_only"].value = str(sd), True
    fields["controlnet_model"].value = str(controlnet_dir)
    # context is only used (and shown) with a mask, but must fit the tiny 64 px model size
    fields["steps"].value, fields["resolution"].value, fields["context"].value = 10, 64, 16
    controlnet.live_preview.value = True
    controlnet.run()
    generated = viewer.layers[-1]
    # one above the other: the image with its Canny preview on top, the generated slice
    viewer.layers.move(viewer.layers.index(controlnet.preview_layer), 1)
    viewer.layers.move(viewer.layers.index(image), 0)
    _show_only(viewer, controlnet.preview_layer, image, generated)
    viewer.grid.stride, viewer.grid.shape, viewer.grid.spacing = 2, (2, 1), 0.03
    viewer.grid.enabled = True
    viewer.reset_view()
    _shoot(viewer, "controlnet_widget.png", written)
    viewer.grid.enabled = False


if __name__ == "__main__":
    for path in main():
        print("wrote", path)
