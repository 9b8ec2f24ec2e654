"""Dock widget: synthesize missing slices or upsample z with any registered engine."""

from __future__ import annotations

from typing import Any

import napari
from magicgui.widgets import ComboBox, LineEdit, SpinBox

from .. import api
from ..core.indices import parse_indices
from ..core.progress import CancelToken
from ._base import EngineWidget, LayerPicker, layer_data
from ._methods import MethodChooser


class InterpolateWidget(EngineWidget):
    """Rebuild missing slices of a volume, or insert intermediate slices."""

    engine_name = "interpolate"
    run_text = "Interpolate"

    def build_form(self) -> None:
        self.image_picker = LayerPicker(self.viewer, napari.layers.Image, label="volume")
        self.methods = MethodChooser("interpolate")
        self.method = self.methods.combo
        self.mode = ComboBox(
            choices=["missing slices", "upsample z"], value="missing slices", label="mode"
        )
        self.missing = LineEdit(value="", label="missing slices", tooltip="e.g. 3, 7, 10-12")
        self.factor = SpinBox(
            value=2,
            min=2,
            max=64,
            label="z factor",
            tooltip="n slices become (n - 1) * factor + 1; the z voxel size shrinks by it",
        )
        self.form.extend([self.image_picker, self.method, self.mode, self.missing, self.factor])
        self.add_section(self.methods.native)
        self.mode.changed.connect(self._update_mode)
        self._update_mode()

    def _update_mode(self, _value=None) -> None:
        missing_mode = self.mode.value == "missing slices"
        self.missing.visible = missing_mode
        self.factor.visible = not missing_mode

    def snapshot(self) -> dict[str, Any]:
        layer = self.image_picker.layer
        if layer is None:
            raise ValueError("choose a volume (3D image layer)")
        volume = layer_data(layer)
        if volume.ndim != 3:
            raise ValueError(
                f"layer '{layer.name}' is {volume.ndim}D; slice interpolation needs a 3D volume"
            )
        spec: dict[str, Any] = {
            "source_layer": layer,
            "volume": volume,
            "method": self.methods.method,
            "params": self.methods.params(),
        }
        if self.mode.value == "missing slices":
            missing = parse_indices(self.missing.value, volume.shape[0])
            if not missing:
                raise ValueError("type the indices of the missing slices, e.g. '3, 7, 10-12'")
            spec.update(missing=missing, factor=None)
        else:
            spec.update(missing=None, factor=int(self.factor.value))
        return spec

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        return api.interpolate_job(
            spec["volume"],
            method=spec["method"],
            missing=spec["missing"],
            factor=spec["factor"],
            params=spec["params"],
            cancel=cancel,
        )
