"""Dock widget: create and edit the mask that engines regenerate.

Mask operations only ever change the *mask* layer's data; image layers are never
modified. Every button's edit goes through napari's undo-aware Labels API
(:func:`set_mask_data`), as one undo step: Ctrl+Z restores the mask exactly as it was
before the button was pressed, and a brush stroke before it stays undoable too. The mask made here, ``"<image> mask"``, carries ``metadata["mask_for"]`` and
is what the other docks' mask pickers choose by default for that image.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import Container, PushButton
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from .._napari.layers import source_geometry
from ..core import masks
from ..core.params import ParameterError, field_spec, fields_of
from ..core.validation import InvalidInputError, check_mask
from ..workflows.settings import MaskToolParams
from ._base import LayerPicker
from ._docks import WIDGETS, DockColumnFit, scrollable
from ._fields import ParamsForm, read_widget, widget_for
from ._help import help_button
from ._pickers import MaskPicker, mask_fraction


def set_mask_data(layer, new) -> int:
    """Change ``layer``'s data to ``new`` as one undoable step; return the pixels changed.

    Only the pixels that differ are written, through
    :meth:`napari.layers.Labels.data_setitem` inside one ``block_history`` group, so
    Ctrl+Z (:meth:`~napari.layers.Labels.undo`) brings back exactly the previous mask,
    and earlier brush strokes stay in the history below it. Assigning ``layer.data``
    instead would bypass that history (undo would then replay old strokes onto the new
    mask).
    """
    old = np.asarray(layer.data)
    new = np.asarray(new)
    if new.shape != old.shape:
        raise ValueError(f"the new mask has shape {new.shape}, the layer {old.shape}")
    changed = np.nonzero(old != new)
    if changed[0].size == 0:
        return 0
    with layer.block_history():
        layer.data_setitem(changed, new[changed].astype(old.dtype, copy=False))
    return int(changed[0].size)


def _edited(old_mask: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """``old_mask`` where only the pixels whose masked state changed are set (label 1) or
    cleared (0): labels of pixels that stay masked are kept."""
    out = np.array(old_mask, copy=True)
    was = old_mask != 0
    out[masked & ~was] = 1
    out[~masked & was] = 0
    return out


def _labelled(error: ParameterError) -> str:
    """``error`` with its field named by the dock's label (``threshold high must be ...``)."""
    return f"{field_spec(MaskToolParams, error.field).label} {error.reason}"


def _row(*widgets) -> Container:
    return Container(widgets=list(widgets), layout="horizontal", labels=False)


class MaskWidget(DockColumnFit, QWidget):
    """Create a mask for an image layer and grow/shrink/feather/threshold/copy it."""

    title = "Mask painting"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.image_picker = LayerPicker(
            napari_viewer,
            napari.layers.Image,
            label="image",
            tooltip="the image the mask is for (it is never modified)",
        )
        self.create_button = PushButton(
            text="Create mask layer",
            tooltip="add (or select) the Labels layer '<image> mask' with the image's shape, "
            "scale and units, with the brush armed on label 1",
        )
        self.mask_picker = MaskPicker(
            napari_viewer,
            self.image_picker,
            label="mask",
            tooltip="the mask the buttons below edit (default: '<image> mask')",
        )
        # the settings' widgets, built from their one declaration (MaskToolParams)
        self.fields = {
            spec.name: widget_for(spec, spec.default) for spec in fields_of(MaskToolParams)
        }
        self.radius = self.fields["radius"]
        self.grow_button = PushButton(text="Grow", tooltip="dilate the mask by the radius")
        self.shrink_button = PushButton(text="Shrink", tooltip="erode the mask by the radius")
        self.feather = self.fields["feather"]  # default: the engines' own (3 px)
        self.feather_button = PushButton(
            text="Show feathered edge",
            tooltip="add (or update) the layer '<mask> feather': the blend weights, 0 outside "
            "the mask rising to 1 inside over the feather width",
        )
        self.low, self.high = self.fields["threshold_low"], self.fields["threshold_high"]
        self.threshold_button = PushButton(
            text="Mask from threshold",
            tooltip="replace the mask by the image's pixels within [low, high]",
        )
        self.ring_form = ParamsForm(masks.RingDetectorParams)
        self.rings_button = PushButton(
            text="Detect ring artifacts",
            tooltip="replace the mask by the rings around the slice centre (the rotation axis) "
            "found by the radial-profile detector with the settings above",
        )
        self.copy_start, self.copy_stop = self.fields["copy_start"], self.fields["copy_stop"]
        self.copy_button = PushButton(
            text="Copy current slice's mask",
            tooltip="overwrite slices 'from'..'to' with the mask of the slice shown",
        )
        self.form = Container(
            widgets=[
                self.image_picker,
                self.create_button,
                self.mask_picker,
                self.radius,
                _row(self.grow_button, self.shrink_button),
                self.feather,
                self.feather_button,
                self.low,
                self.high,
                self.threshold_button,
            ]
        )
        self.lower_form = Container(
            widgets=[self.rings_button, self.copy_start, self.copy_stop, self.copy_button]
        )
        rings_label = QLabel("Ring detector")
        rings_label.setToolTip(masks.detect_ring_artifacts.__doc__.split("\n\n")[0])
        self.status = QLabel("")
        self.status.setWordWrap(True)
        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 0, 0)
        body_layout.addWidget(self.form.native)
        body_layout.addWidget(rings_label)
        body_layout.addWidget(self.ring_form.native)
        body_layout.addWidget(self.lower_form.native)
        body_layout.addWidget(self.status)
        self.help_button = help_button(type(self).__name__)
        body_layout.addWidget(self.help_button, 0, Qt.AlignmentFlag.AlignRight)
        body_layout.addStretch(1)
        self.scroll_area = scrollable(body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll_area, 1)
        self.create_button.clicked.connect(self.create_mask)
        self.grow_button.clicked.connect(
            lambda: self._apply(lambda m: masks.grow_mask(m, self.settings().radius), "grown")
        )
        self.shrink_button.clicked.connect(
            lambda: self._apply(lambda m: masks.shrink_mask(m, self.settings().radius), "shrunk")
        )
        self.feather_button.clicked.connect(self.show_feather)
        self.threshold_button.clicked.connect(self.mask_from_threshold)
        self.rings_button.clicked.connect(self.detect_rings)
        self.copy_button.clicked.connect(self.copy_current_slice)
        WIDGETS.add(self)

    # -- helpers ------------------------------------------------------------
    def settings(self) -> MaskToolParams:
        """The tools' settings as shown (checked against their declaration).

        Raises
        ------
        ValueError
            A value out of its declared range, named by its label.
        """
        specs = fields_of(MaskToolParams)
        try:
            return MaskToolParams.from_mapping(
                {spec.name: read_widget(spec, self.fields[spec.name]) for spec in specs}
            )
        except ParameterError as error:
            raise ValueError(_labelled(error)) from None

    def threshold_window(self) -> tuple[float, float]:
        """``(low, high)`` of *Mask from threshold* (``ValueError`` unless high > low)."""
        try:
            return self.settings().threshold_window()
        except ParameterError as error:
            raise ValueError(_labelled(error)) from None

    def _report(self, text: str) -> None:
        self.status.setText(text)

    def _fail(self, error: Exception) -> None:
        self._report(f"Error: {error}")
        from napari.utils.notifications import show_error

        show_error(f"{self.title}: {error}")

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
        return self.viewer.add_labels(
            mask,
            name=name,
            opacity=0.6,
            metadata={"mask_for": image_layer.name},
            **source_geometry(image_layer, mask.ndim),
        )

    def _select(self, layer) -> None:
        self.mask_picker.choose(layer.name)

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
        self._select(layer)
        self.viewer.layers.selection.active = layer
        layer.selected_label = 1
        layer.brush_size = max(layer.brush_size, 10)
        layer.mode = "paint"
        self._report(f"Paint on '{layer.name}' (label 1); erase with label 0.")
        return layer

    def _apply(self, operation, verb: str) -> None:
        try:
            layer = self._mask_layer()
            old = np.asarray(layer.data)
            set_mask_data(layer, _edited(old, np.asarray(operation(old != 0), dtype=bool)))
        except ValueError as error:
            self._fail(error)
            return
        self._report(
            f"Mask {verb}: {int(np.count_nonzero(layer.data))} pixels masked (Ctrl+Z undoes)."
        )

    def show_feather(self):
        """Show the blend weights of the mask's feathered edge as ``"<mask> feather"``."""
        try:
            layer = self._mask_layer()
            feather = self.settings().feather
            weights = masks.ramp_mask(np.asarray(layer.data) != 0, feather)
        except ValueError as error:
            self._fail(error)
            return None
        weights = weights.astype(np.float32)
        name = f"{layer.name} feather"
        if name in self.viewer.layers:
            shown = self.viewer.layers[name]
            shown.data = weights
        else:
            shown = self.viewer.add_image(
                weights,
                name=name,
                colormap="magma",
                blending="additive",
                contrast_limits=(0.0, 1.0),
                opacity=0.7,
                metadata={"feather_of": layer.name},
                **source_geometry(layer, weights.ndim),
            )
        shown.metadata["feather_px"] = feather
        self._report(
            f"'{name}': blend weights over {feather:g} px inside the mask "
            "(0 = original kept, 1 = generated). Use the same value as 'feather (px)' in "
            "DiffEdit or ControlNet."
        )
        return shown

    def mask_from_threshold(self) -> None:
        """Mask the pixels of the image within ``[low, high]``."""
        try:
            image_layer = self._image_layer()
            low, high = self.threshold_window()
            layer = self._ensure_mask(image_layer)
            new = masks.mask_from_threshold(np.asarray(image_layer.data), low, high)
        except ValueError as error:
            self._fail(error)
            return
        set_mask_data(layer, new.astype(np.asarray(layer.data).dtype))
        self._select(layer)
        self._report(f"Threshold mask: {int(np.count_nonzero(new))} pixels in [{low}, {high}].")

    def detect_rings(self) -> None:
        """Mask ring artifacts found by the radial-profile detector (settings in the form)."""
        try:
            params = self.ring_form.params()
            image_layer = self._image_layer()
            layer = self._ensure_mask(image_layer)
            image = np.asarray(image_layer.data)
            rings = masks.detect_ring_artifacts(image, **params.to_dict())
        except (ValueError, InvalidInputError) as error:
            self._fail(error)
            return
        if rings.ndim < image.ndim:
            rings = np.broadcast_to(rings, image.shape)
        set_mask_data(layer, rings.astype(np.asarray(layer.data).dtype))
        self._select(layer)
        self._report(
            f"Ring detector masked {int(np.count_nonzero(rings))} pixels "
            f"({mask_fraction(rings):.1%} of the image); raise the threshold or the minimum "
            "contrast to mask fewer."
        )

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
            settings = self.settings()
            start, stop = settings.copy_start, settings.copy_stop
            new = masks.copy_slice_mask(data, source, start, stop)
            set_mask_data(layer, new)
        except ValueError as error:
            self._fail(error)
            return
        self._report(f"Copied slice {source}'s mask to slices {start}..{stop}.")
