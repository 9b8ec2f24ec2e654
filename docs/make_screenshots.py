"""Regenerate the screenshots in docs/images from the real plugin (needs a display).

Run under a virtual screen:  ``xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py``
Jobs run synchronously (``NAPARI_SCIGEN_NOTHREADS=1``) so each picture shows a finished state.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("NAPARI_SCIGEN_NOTHREADS", "1")

IMAGES = Path(__file__).resolve().parent / "images"


def _settle(viewer, rounds: int = 20) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()


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
    viewer.close()
    return written


if __name__ == "__main__":
    for path in main():
        print("wrote", path)
