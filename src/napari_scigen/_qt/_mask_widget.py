"""Dock widget: create and edit the mask that engines regenerate.

Mask operations only ever replace the *mask* layer's data; image layers are
never modified.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import Container, FloatSpinBox, PushButton, SpinBox
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..core import masks
from ..core.validation import check_mask
from ._base import LayerPicker


class MaskWidget(QWidget):
    """Create a mask for an image layer and grow/shrink/threshold/copy it."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.image_picker = LayerPicker(napari_viewer, napari.layers.Image, label="image")
        self.create_button = PushButton(text="Create mask layer")
        self.mask_picker = LayerPicker(napari_viewer, napari.layers.Labels, label="mask")
        self.radius = SpinBox(value=2, min=1, max=100, label="radius (px)")
        self.grow_button = PushButton(text="Grow")
        self.shrink_button = PushButton(text="Shrink")
        self.low = FloatSpinBox(value=0.0, min=-1e9, max=1e9, label="threshold low")
        self.high = FloatSpinBox(value=0.0, min=-1e9, max=1e9, label="threshold high")
        self.threshold_button = PushButton(text="Mask from threshold")
        self.rings_button = PushButton(text="Detect ring artifacts")
        self.copy_start = SpinBox(value=0, min=0, max=100_000, label="copy to slices from")
        self.copy_stop = SpinBox(value=0, min=0, max=100_000, label="to")
        self.copy_button = PushButton(text="Copy current slice's mask")
        self.form = Container(
            widgets=[
                self.image_picker,
                self.create_button,
                self.mask_picker,
                self.radius,
                Container(
                    widgets=[self.grow_button, self.shrink_button],
                    layout="horizontal",
                    labels=False,
                ),
                self.low,
                self.high,
                self.threshold_button,
                self.rings_button,
                self.copy_start,
                self.copy_stop,
                self.copy_button,
            ]
        )
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.create_button.clicked.connect(self.create_mask)
        self.grow_button.clicked.connect(
            lambda: self._apply(lambda m: masks.grow_mask(m, self.radius.value), "grown")
        )
        self.shrink_button.clicked.connect(
            lambda: self._apply(lambda m: masks.shrink_mask(m, self.radius.value), "shrunk")
        )
        self.threshold_button.clicked.connect(self.mask_from_threshold)
        self.rings_button.clicked.connect(self.detect_rings)
        self.copy_button.clicked.connect(self.copy_current_slice)

    # -- helpers ------------------------------------------------------------
    def _report(self, text: str) -> None:
        self.status.setText(text)

    def _fail(self, error: Exception) -> None:
        self._report(f"Error: {error}")
        from napari.utils.notifications import show_error

        show_error(f"Mask painting: {error}")

    def _image_layer(self):
        layer = self.image_picker.layer
        if layer is None:
            raise ValueError("choose an image layer first")
        return layer

    def _mask_layer(self):
        layer = self.mask_picker.layer
        if layer is None:
            raise ValueError("choose or create a mask (Labels) layer first")
        return layer

    def _ensure_mask(self, image_layer) -> napari.layers.Labels:
        name = f"{image_layer.name} mask"
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            check_mask(
                np.asarray(layer.data),
                image_layer.data.shape,
                name=f"mask '{name}'",
                allow_empty=True,
            )
            return layer
        mask = np.zeros(image_layer.data.shape, dtype=np.uint8)
        layer = self.viewer.add_labels(
            mask, name=name, scale=image_layer.scale, translate=image_layer.translate, opacity=0.6
        )
        return layer

    # -- actions ------------------------------------------------------------
    def create_mask(self) -> napari.layers.Labels | None:
        """Create (or select) ``"<image> mask"`` and arm the brush."""
        try:
            image_layer = self._image_layer()
            if image_layer.rgb:
                raise ValueError(
                    f"'{image_layer.name}' is RGB; masks are for grayscale microCT layers"
                )
            layer = self._ensure_mask(image_layer)
        except ValueError as error:
            self._fail(error)
            return None
        self.mask_picker.reset_choices()
        self.mask_picker.value = layer.name
        self.viewer.layers.selection.active = layer
        layer.selected_label = 1
        layer.brush_size = max(layer.brush_size, 10)
        layer.mode = "paint"
        self._report(f"Paint on '{layer.name}' (label 1); erase with label 0.")
        return layer

    def _apply(self, operation, verb: str) -> None:
        try:
            layer = self._mask_layer()
            new = operation(np.asarray(layer.data) != 0)
        except ValueError as error:
            self._fail(error)
            return
        layer.data = np.asarray(new, dtype=np.asarray(layer.data).dtype)
        self._report(f"Mask {verb}: {int(np.count_nonzero(layer.data))} pixels masked.")

    def mask_from_threshold(self) -> None:
        """Mask the pixels of the image within ``[low, high]``."""
        try:
            image_layer = self._image_layer()
            low, high = float(self.low.value), float(self.high.value)
            if high <= low:
                raise ValueError(f"threshold high ({high}) must be above low ({low})")
            layer = self._ensure_mask(image_layer)
            new = masks.mask_from_threshold(np.asarray(image_layer.data), low, high)
        except ValueError as error:
            self._fail(error)
            return
        layer.data = new.astype(np.uint8)
        self.mask_picker.reset_choices()
        self.mask_picker.value = layer.name
        self._report(f"Threshold mask: {int(np.count_nonzero(new))} pixels in [{low}, {high}].")

    def detect_rings(self) -> None:
        """Mask ring artifacts found by the radial-profile detector."""
        try:
            image_layer = self._image_layer()
            layer = self._ensure_mask(image_layer)
            image = np.asarray(image_layer.data)
            rings = masks.detect_ring_artifacts(image)
        except ValueError as error:
            self._fail(error)
            return
        if rings.ndim < image.ndim:
            rings = np.broadcast_to(rings, image.shape)
        layer.data = rings.astype(np.uint8)
        self.mask_picker.reset_choices()
        self.mask_picker.value = layer.name
        self._report(f"Ring detector masked {int(np.count_nonzero(rings))} pixels.")

    def current_slice(self, layer) -> int:
        """The data index of the slice shown for ``layer``."""
        return int(round(layer.world_to_data(self.viewer.dims.point)[0]))

    def copy_current_slice(self) -> None:
        """Copy the shown slice's mask to slices ``from``..``to`` (inclusive)."""
        try:
            layer = self._mask_layer()
            data = np.asarray(layer.data)
            if data.ndim != 3:
                raise ValueError("copying a slice's mask needs a 3D mask")
            source = self.current_slice(layer)
            new = masks.copy_slice_mask(
                data, source, int(self.copy_start.value), int(self.copy_stop.value)
            )
        except ValueError as error:
            self._fail(error)
            return
        layer.data = new
        self._report(
            f"Copied slice {source}'s mask to slices {self.copy_start.value}..{self.copy_stop.value}."
        )
