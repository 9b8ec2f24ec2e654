"""Dock widget: compare a generated layer with its reference (SSIM, PSNR, LPIPS, FID, ...).

The metrics run in a worker through :func:`napari_scigen.metrics.evaluate.run_evaluate`;
the rows it returns fill a table that can be copied (Ctrl+C or "Copy": tab-separated,
ready for a spreadsheet) and exported as CSV or JSON. SSIM and LPIPS maps become image
layers over the generated layer. A metric whose weights are missing shows as a row
with a note instead of failing the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit
from qtpy.QtCore import QEvent, Qt
from qtpy.QtGui import QGuiApplication, QKeySequence
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
)

from .._napari.layers import layer_metadata, next_layer_name
from ..core.progress import CancelToken
from ..core.provenance import to_jsonable
from ..core.result import EngineResult
from ..core.stack import percentile_window
from ..core.validation import check_mask
from ..metrics.evaluate import DEFAULT_METRICS, EVALUATE_METRICS
from ..metrics.report import (
    COLUMNS,
    format_value,
    rows_to_tsv,
    summarize_details,
    write_rows_csv,
    write_rows_json,
)
from ._base import EngineWidget, LayerPicker, layer_data

#: Region choices: label shown -> (pass the mask to run_evaluate, regions kept).
REGION_CHOICES = {
    "inside and outside": (True, None),
    "inside": (True, "inside"),
    "outside": (True, "outside"),
    "whole image (ignore mask)": (False, None),
}

#: Data-range choices for SSIM/PSNR.
RANGE_AUTO = "dtype span (integers) / reference max-min"
RANGE_CONTRAST = "window: reference contrast limits"
RANGE_PERCENTILE = "window: reference 0.5-99.5 percentiles"
RANGE_WINDOW = "window: low/high below"
RANGE_VALUE = "data range: value below"
RANGE_CHOICES = (RANGE_AUTO, RANGE_CONTRAST, RANGE_PERCENTILE, RANGE_WINDOW, RANGE_VALUE)

#: Contrast limits of the map layers.
MAP_CONTRAST = {"ssim map": (0.0, 1.0)}


# ---------------------------------------------------------------------------------------
# Qt
# ---------------------------------------------------------------------------------------


class MetricsTable(QTableWidget):
    """The results table; Ctrl+C copies the selected rows (all rows if none) as TSV."""

    def __init__(self):
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setStretchLastSection(True)
        self.verticalHeader().setVisible(False)
        self.rows: list[dict] = []

    def set_rows(self, rows: list[dict]) -> None:
        """Show ``rows`` (evaluation rows) in the table."""
        self.rows = list(rows)
        self.setRowCount(len(self.rows))
        for index, row in enumerate(self.rows):
            details = row.get("details") or {}
            cells = (
                str(row["metric"]),
                format_value(row["value"]),
                str(row["region"]),
                summarize_details(details),
                str(row.get("note", "")),
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if COLUMNS[column] == "value":
                    item.setData(Qt.ItemDataRole.UserRole, row["value"])
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                if COLUMNS[column] == "details":
                    item.setToolTip(json.dumps(to_jsonable(details), indent=1)[:4000])
                if COLUMNS[column] == "note" and text:
                    item.setToolTip(text)
                self.setItem(index, column, item)
        self.resizeColumnsToContents()

    def selected_rows(self) -> list[dict]:
        """The rows selected in the table (all rows when nothing is selected)."""
        indices = sorted({index.row() for index in self.selectedIndexes()})
        return [self.rows[i] for i in indices] if indices else list(self.rows)

    def copy_selection(self) -> str:
        """Put the selected rows (all if none) on the clipboard as TSV; return the text."""
        text = rows_to_tsv(self.selected_rows())
        QGuiApplication.clipboard().setText(text)
        return text

    def event(self, event) -> bool:
        # Take Ctrl+C before window-level shortcuts (napari's) can claim it.
        if event.type() == QEvent.Type.ShortcutOverride and event.matches(
            QKeySequence.StandardKey.Copy
        ):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy_selection()
            event.accept()
            return
        super().keyPressEvent(event)


class MetricsWidget(EngineWidget):
    """Compare a generated layer with a reference layer and tabulate the metrics."""

    engine_name = "metrics"
    run_text = "Evaluate"

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(napari_viewer)
        self.provenance: dict[str, Any] = {}
        self.map_layers: list = []
        self.table = MetricsTable()
        self.table.setMinimumHeight(160)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the selected rows (all if none) as tab-separated text")
        self.export_csv_button = QPushButton("Export CSV…")
        self.export_json_button = QPushButton("Export JSON…")
        buttons = QHBoxLayout()
        for button in (self.copy_button, self.export_csv_button, self.export_json_button):
            button.setEnabled(False)
            buttons.addWidget(button)
        # under the status line, above the base layout's final stretch
        layout = self.layout()
        layout.insertWidget(layout.count() - 1, self.table, 1)
        layout.insertLayout(layout.count() - 1, buttons)
        self.copy_button.clicked.connect(self.table.copy_selection)
        self.export_csv_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.export_json_button.clicked.connect(lambda: self._export_dialog("json"))

    def build_form(self) -> None:
        viewer = self.viewer
        self.reference_picker = LayerPicker(viewer, napari.layers.Image, label="reference")
        self.generated_picker = LayerPicker(viewer, napari.layers.Image, label="generated")
        self.mask_picker = LayerPicker(
            viewer, napari.layers.Labels, label="mask (optional)", optional=True
        )
        self.region = ComboBox(
            choices=list(REGION_CHOICES), value="inside and outside", label="region"
        )
        self.metric_boxes = {
            name: CheckBox(value=name in DEFAULT_METRICS, text=name) for name in EVALUATE_METRICS
        }
        half = (len(EVALUATE_METRICS) + 1) // 2
        boxes = list(self.metric_boxes.values())
        metric_rows = Container(
            widgets=[
                Container(widgets=boxes[:half], layout="horizontal", labels=False),
                Container(widgets=boxes[half:], layout="horizontal", labels=False),
            ],
            labels=False,
            label="metrics",
        )
        self.range_mode = ComboBox(
            choices=list(RANGE_CHOICES), value=RANGE_PERCENTILE, label="range"
        )
        self.window_low = FloatSpinBox(value=0.0, min=-1e12, max=1e12, step=1.0, label="low")
        self.window_high = FloatSpinBox(value=1.0, min=-1e12, max=1e12, step=1.0, label="high")
        self.range_value = FloatSpinBox(
            value=1.0, min=1e-12, max=1e12, step=1.0, label="data range"
        )
        self.device = ComboBox(choices=["auto", "cpu", "cuda", "mps"], value="auto", label="device")
        self.lpips_net = ComboBox(choices=["alex", "vgg"], value="alex", label="LPIPS net")
        self.prompt = LineEdit(value="", label="CLIP prompt", tooltip="text scored by clipscore")
        self.add_maps = CheckBox(value=True, text="add SSIM/LPIPS maps as layers")
        self.form.extend(
            [
                self.reference_picker,
                self.generated_picker,
                self.mask_picker,
                self.region,
                metric_rows,
                self.range_mode,
                self.window_low,
                self.window_high,
                self.range_value,
                self.device,
                self.lpips_net,
                self.prompt,
                self.add_maps,
            ]
        )
        choices = [c for c in self.generated_picker.choices if c != self.reference_picker.value]
        if choices:  # start with two different layers when there are
            self.generated_picker.value = choices[-1]
        self.range_mode.changed.connect(self._update_visibility)
        self.mask_picker.changed.connect(self._update_visibility)
        for box in self.metric_boxes.values():
            box.changed.connect(self._update_visibility)
        self._update_visibility()

    def _update_visibility(self, _value=None) -> None:
        mode = self.range_mode.value
        self.window_low.visible = self.window_high.visible = mode == RANGE_WINDOW
        self.range_value.visible = mode == RANGE_VALUE
        self.region.visible = self.mask_picker.value is not None
        self.lpips_net.visible = self.metric_boxes["lpips"].value
        self.prompt.visible = self.metric_boxes["clipscore"].value

    # -- parameters -----------------------------------------------------------------
    def selected_metrics(self) -> tuple[str, ...]:
        """Names of the ticked metrics, in evaluation order."""
        return tuple(name for name, box in self.metric_boxes.items() if box.value)

    def _data_range(self, reference_layer, reference: np.ndarray):
        mode = self.range_mode.value
        if mode == RANGE_CONTRAST:
            low, high = (float(v) for v in reference_layer.contrast_limits)
        elif mode == RANGE_PERCENTILE:
            window = percentile_window(reference, 0.5, 99.5)
            low, high = window.low, window.high
        elif mode == RANGE_WINDOW:
            low, high = float(self.window_low.value), float(self.window_high.value)
        elif mode == RANGE_VALUE:
            return float(self.range_value.value)
        else:
            return None
        if not high > low:
            raise ValueError(f"the intensity window needs low < high, got {low}, {high}")
        return (low, high)

    def snapshot(self) -> dict[str, Any]:
        reference_layer = self.reference_picker.layer
        generated_layer = self.generated_picker.layer
        if reference_layer is None or generated_layer is None:
            raise ValueError("choose a reference and a generated image layer")
        metrics = self.selected_metrics()
        if not metrics:
            raise ValueError("tick at least one metric")
        reference = layer_data(reference_layer)
        generated = layer_data(generated_layer)
        mask_layer = self.mask_picker.layer
        use_mask, region = REGION_CHOICES[self.region.value]
        mask = None
        if mask_layer is not None and use_mask:
            mask = check_mask(
                layer_data(mask_layer), reference.shape, name=f"mask '{mask_layer.name}'"
            ).copy()
        else:
            region = None
        return {
            "source_layer": generated_layer,
            "reference_layer": reference_layer,
            "reference": reference,
            "generated": generated,
            "mask": mask,
            "region": region,
            "metrics": metrics,
            "data_range": self._data_range(reference_layer, reference),
            "device": self.device.value,
            "lpips_net": self.lpips_net.value,
            "voxel_size": float(reference_layer.scale[-1]),
            "prompt": self.prompt.value.strip() or None,
            "add_maps": bool(self.add_maps.value),
        }

    def run(self):
        """Clear the previous table, then evaluate (errors leave an empty table)."""
        if self.job is None or self.job.finished:
            self.show_rows([])
        return super().run()

    def show_rows(self, rows: list[dict]) -> None:
        """Fill the table and enable Copy/Export when there is something to copy."""
        self.table.set_rows(rows)
        for button in (self.copy_button, self.export_csv_button, self.export_json_button):
            button.setEnabled(bool(rows))

    def make_job(self, spec: dict[str, Any], cancel: CancelToken):
        from ..metrics.evaluate import run_evaluate

        return run_evaluate(
            spec["reference"],
            spec["generated"],
            metrics=spec["metrics"],
            mask=spec["mask"],
            data_range=spec["data_range"],
            device=spec["device"],
            lpips_net=spec["lpips_net"],
            voxel_size=spec["voxel_size"],
            prompt=spec["prompt"],
            cancel=cancel,
        )

    # -- results --------------------------------------------------------------------
    def on_result(self, spec: dict[str, Any], result: EngineResult) -> None:
        rows = list(result.provenance.get("table", []))
        if spec["region"] is not None:
            other = "outside" if spec["region"] == "inside" else "inside"
            rows = [row for row in rows if row["region"] != other]
        self.provenance = dict(result.provenance)
        self.provenance["source"] = dict(self.provenance.get("source", {}))
        self.provenance["source"]["reference"] = {
            **self.provenance["source"].get("reference", {}),
            "layer": spec["reference_layer"].name,
        }
        self.provenance["source"]["generated"] = {
            **self.provenance["source"].get("generated", {}),
            "layer": spec["source_layer"].name,
        }
        self.show_rows(rows)
        self.map_layers = self.add_map_layers(spec, result) if spec["add_maps"] else []

    def add_map_layers(self, spec: dict[str, Any], result: EngineResult) -> list:
        """Add the SSIM/LPIPS maps as float32 image layers over the generated layer."""
        source = spec["source_layer"]
        metadata = layer_metadata(result.provenance, dict(source.metadata))
        added = []
        for key, data in result.images.items():
            name = next_layer_name([layer.name for layer in self.viewer.layers], source.name, key)
            ndim = np.ndim(data)
            kwargs: dict[str, Any] = {
                "name": name,
                "scale": tuple(source.scale)[-ndim:],
                "translate": tuple(source.translate)[-ndim:],
                "metadata": metadata,
                "colormap": "viridis" if key.startswith("ssim") else "magma",
            }
            finite = np.asarray(data)[np.isfinite(data)]
            if key in MAP_CONTRAST:
                kwargs["contrast_limits"] = MAP_CONTRAST[key]
            elif finite.size and float(finite.max()) > float(finite.min()):
                kwargs["contrast_limits"] = (float(finite.min()), float(finite.max()))
            added.append(self.viewer.add_image(data, **kwargs))
        return added

    @property
    def rows(self) -> list[dict]:
        """The rows shown in the table."""
        return list(self.table.rows)

    def export(self, path: str | Path) -> Path:
        """Export the table to ``path``: JSON for ``*.json``, CSV otherwise."""
        if Path(path).suffix.lower() == ".json":
            return write_rows_json(self.rows, path, provenance=self.provenance)
        return write_rows_csv(self.rows, path)

    def _export_dialog(self, kind: str) -> None:
        pattern = "CSV (*.csv)" if kind == "csv" else "JSON (*.json)"
        path, _ = QFileDialog.getSaveFileName(
            self, f"Export metrics as {kind.upper()}", "", pattern
        )
        if not path:
            return
        if not path.lower().endswith(f".{kind}"):
            path += f".{kind}"
        try:
            written = self.export(path)
        except OSError as error:
            self.show_error(error)
            return
        self.set_status(f"Wrote {written}")
