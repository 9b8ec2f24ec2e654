"""Layer pickers: combo boxes of the viewer's layers, and mask pickers with safe defaults.

:class:`MaskPicker` defaults to the mask made for the image chosen next to it (the
``"<image> mask"`` layer of Mask painting, or a Labels layer whose metadata says
``mask_for`` that image), never to a ground-truth layer (``metadata["ground_truth"]``,
as the sample data's phase and ring labels) and never to an arbitrary Labels layer:
with no such mask it shows none. A mask made for the chosen image while the picker is
open (*Create mask layer*) is selected at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox

if TYPE_CHECKING:
    import napari

#: A mask covering more than this fraction of the volume is worth a warning.
LARGE_MASK_FRACTION = 0.25


class LayerPicker(ComboBox):
    """A combo box listing the viewer's layers of one type, kept up to date."""

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        layer_type: type,
        *,
        label: str,
        optional: bool = False,
        tooltip: str = "",
    ):
        self._viewer = viewer
        self._layer_type = layer_type
        self._optional = optional
        super().__init__(label=label, choices=self._choices, nullable=optional, tooltip=tooltip)
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._refresh)

    def _choices(self, _widget=None):
        names = [layer.name for layer in self._viewer.layers if isinstance(layer, self._layer_type)]
        return ([None] if self._optional else []) + names

    def _refresh(self, _event=None) -> None:
        self.reset_choices()

    @property
    def layer(self):
        """The selected layer, or ``None``."""
        name = self.value
        return self._viewer.layers[name] if name in self._viewer.layers else None


def is_ground_truth(layer) -> bool:
    """Whether ``layer`` holds ground truth (never a default mask)."""
    return bool(layer.metadata.get("ground_truth")) or "(ground truth)" in layer.name


def masks_for(viewer: napari.viewer.Viewer, image_name: str | None) -> list:
    """The Labels layers made as masks for ``image_name``, the preferred one first.

    ``"<image> mask"`` (Mask painting) comes first, then layers whose metadata says
    ``mask_for`` the image, newest first. Ground-truth layers are never included.
    """
    import napari

    if not image_name:
        return []
    labels = [
        layer
        for layer in viewer.layers
        if isinstance(layer, napari.layers.Labels) and not is_ground_truth(layer)
    ]
    painted = [layer for layer in labels if layer.name == f"{image_name} mask"]
    made = [
        layer
        for layer in reversed(labels)
        if layer.metadata.get("mask_for") == image_name and layer not in painted
    ]
    return painted + made


class MaskPicker(LayerPicker):
    """A Labels picker that defaults to the mask made for the image of ``image_picker``.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    image_picker : LayerPicker
        The picker of the image the mask is for.
    label, tooltip : str
        As for any magicgui widget.

    The picker always offers "none" (``-----``): a widget that needs a mask says so
    when it is run without one. The default follows the image until the user picks a
    mask by hand; a new mask for the chosen image is selected when it is added.
    """

    def __init__(
        self, viewer: napari.viewer.Viewer, image_picker: LayerPicker, *, label: str, tooltip: str
    ):
        import napari

        self.image_picker = image_picker
        self._automatic = True  # the value is our default, not the user's choice
        self._choosing = False
        super().__init__(viewer, napari.layers.Labels, label=label, optional=True, tooltip=tooltip)
        image_picker.changed.connect(self._on_image_changed)
        self.changed.connect(self._on_changed)
        self.choose_default()

    def preferred(self):
        """The mask this picker would choose for the current image, or ``None``."""
        candidates = masks_for(self._viewer, self.image_picker.value)
        return candidates[0] if candidates else None

    def choose_default(self) -> None:
        """Show the preferred mask (or none) and follow the image again."""
        preferred = self.preferred()
        self._set(preferred.name if preferred is not None else None)
        self._automatic = True

    def choose(self, name: str) -> None:
        """Select the mask ``name`` (made by a widget for this image, not a user's pick)."""
        self._set(name)
        self._automatic = True

    def _set(self, name: str | None) -> None:
        self._choosing = True
        try:
            self.reset_choices()
            self.value = name
        finally:
            self._choosing = False

    def _on_changed(self, _value) -> None:
        if not self._choosing:  # the user's choice (none included) is kept from now on
            self._automatic = False

    def _on_image_changed(self, _value=None) -> None:
        if self._automatic:
            self.choose_default()

    def _refresh(self, event=None) -> None:
        added = getattr(event, "value", None) if getattr(event, "type", "") == "inserted" else None
        if added is not None and added in masks_for(self._viewer, self.image_picker.value):
            self.choose(added.name)  # a mask just made for this image: use it
            return
        previous = self.value
        self._choosing = True
        try:
            self.reset_choices()
        finally:
            self._choosing = False
        if self._automatic or (previous is not None and self.value is None):
            self.choose_default()


def mask_fraction(mask: np.ndarray) -> float:
    """Fraction of ``mask``'s pixels that are non-zero."""
    return float(np.count_nonzero(mask)) / max(1, int(np.size(mask)))


def large_mask_warning(mask: np.ndarray, name: str) -> str | None:
    """A warning when ``mask`` covers more than :data:`LARGE_MASK_FRACTION` of the volume."""
    fraction = mask_fraction(mask)
    if fraction <= LARGE_MASK_FRACTION:
        return None
    return (
        f"mask '{name}' covers {fraction:.0%} of the image: every masked pixel is "
        "regenerated, so this can take long (Cancel stops it). Is it the mask you meant?"
    )
