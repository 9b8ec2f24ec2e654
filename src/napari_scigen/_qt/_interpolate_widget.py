"""Dock widget: synthesize missing slices or upsample z with any registered engine.

Each engine's form is built from its declared parameters (for ``stylegan``: the
generator file or run folder, projection steps, ...; for ``learned`` and ``auto``: the
training budget, the uncertainty toggle, ...). A generator trained in the StyleGAN
widget is handed over with :meth:`InterpolateWidget.use_generator`. Engines with a
``voxel_size`` parameter get the layer's scale when the field is left empty (as the CLI
takes the file's voxel size). ``learned``/``auto`` add their uncertainty map as the
layer ``"<volume> learned uncertainty"``; *Run on the whole volume* runs any method
chunked into a zarr store (:mod:`._batch`).
"""

from __future__ import annotations

from typing import Any

import napari
from magicgui.widgets import ComboBox, LineEdit, SpinBox

from ..core.indices import parse_indices
from ..core.progress import CancelToken
from ..engines.registry import get_engine
from ._base import EngineWidget, LayerPicker, layer_data
from ._methods import MethodChooser
from ._offload import engine_job


def with_layer_voxel_size(method: str, params, layer):
    """``params`` with ``voxel_size`` set from ``layer``'s scale when the interpolation engine
    ``method`` declares ``accepts_voxel_size`` and it is empty (``learned``, ``auto``:
    in-plane training rows are resampled by it)."""
    if not get_engine("interpolate", method).accepts_voxel_size or params.voxel_size is not None:
        return params
    scale = tuple(float(s) for s in layer.scale[-3:])
    if all(s == 1.0 for s in scale):  # no calibration: the engine's isotropic assumption
        return params
    return params.replace(voxel_size=scale)


class InterpolateWidget(EngineWidget):
    """Rebuild missing slices of a volume, or insert intermediate slices."""

    engine_name = "interpolate"
    title = "Slice interpolation"
    run_text = "Interpolate"
    run_tooltip = "rebuild the slices with the chosen method; a new layer is added"
    whole_volume_task = "interpolate"

    def build_form(self) -> None:
        self.image_picker = LayerPicker(
            self.viewer,
            napari.layers.Image,
            label="volume",
            tooltip="the 3D image layer; kept slices are copied bit for bit into a new layer",
        )
        self.methods = MethodChooser("interpolate")
        self.method = self.methods.combo
        self.mode = ComboBox(
            choices=["missing slices", "upsample z"],
            value="missing slices",
            label="mode",
            tooltip="missing slices: rebuild the listed slices (same shape); upsample z: "
            "insert slices between all of them",
        )
        self.missing = LineEdit(
            value="",
            label="missing slices",
            tooltip="indices of the slices to rebuild, e.g. 3, 7, 10-12 (the first and last "
            "slice need a neighbour on both sides)",
        )
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

    def _layer(self):
        layer = self.image_picker.layer
        if layer is None:
            raise ValueError("choose a volume (3D image layer)")
        if layer.ndim != 3 or getattr(layer, "rgb", False):
            raise ValueError(
                f"layer '{layer.name}' is {layer.ndim}D; slice interpolation needs a 3D volume"
            )
        return layer

    def _request(self, layer) -> dict[str, Any]:
        """Method, params and missing/factor from the form (no data is read)."""
        request: dict[str, Any] = {
            "method": self.methods.method,
            "params": with_layer_voxel_size(self.methods.method, self.methods.params(), layer),
        }
        if self.mode.value == "missing slices":
            missing = parse_indices(self.missing.value, layer.data.shape[0])
            if not missing:
                raise ValueError("type the indices of the missing slices, e.g. '3, 7, 10-12'")
            request.update(missing=missing, factor=None)
        else:
            request.update(missing=None, factor=int(self.factor.value))
        return request

    def snapshot(self) -> dict[str, Any]:
        layer = self._layer()
        request = self._request(layer)
        return {"source_layer": layer, "volume": layer_data(layer), **request}

    def whole_volume_request(self) -> dict[str, Any]:
        layer = self._layer()
        return {"layer": layer, **self._request(layer)}

    def use_generator(self, path: str) -> None:
        """Choose the ``stylegan`` method with the generator at ``path`` (e.g. a run folder)."""
        self.methods.method = "stylegan"
        self.methods.form.set_values({"generator": str(path)})

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        # the classical engines run in a child process: the GUI never waits on their GIL
        return engine_job(
            "interpolate",
            spec["method"],
            cancel,
            spec["volume"],
            missing=spec["missing"],
            factor=spec["factor"],
            params=spec["params"],
        )
