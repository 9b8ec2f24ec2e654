"""Metrics dock widget: table values, maps, region/window options, copy and export."""

from __future__ import annotations

import csv
import hashlib
import json
import math

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtGui import QGuiApplication

from napari_scigen._qt._metrics_widget import (
    RANGE_WINDOW,
    MetricsWidget,
    format_value,
    rows_to_tsv,
    write_rows_csv,
    write_rows_json,
)
from napari_scigen.core.stack import percentile_window
from napari_scigen.metrics import pixel


def digest(array) -> str:
    """SHA-256 of an array's bytes (to prove an input layer was not modified)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture
def pair_viewer(rock_viewer):
    """The rock volume (reference) and a noisy, partly blurred copy (generated)."""
    viewer, reference = rock_viewer
    rng = np.random.default_rng(5)
    data = np.asarray(reference.data).astype(np.float64)
    data[:, 30:60, 30:60] = data[:, 30:60, 30:60].mean()  # a flat, "regenerated" patch
    data += rng.normal(0, 900, data.shape)
    generated = viewer.add_image(
        np.clip(data, 0, 65535).astype(np.uint16), name="generated", scale=reference.scale
    )
    mask = np.zeros(reference.data.shape, np.uint8)
    mask[:, 30:60, 30:60] = 1
    viewer.add_labels(mask, name="patch", scale=reference.scale)
    return viewer, reference, generated, mask


def _widget(viewer, metrics=("ssim", "psnr")) -> MetricsWidget:
    widget = MetricsWidget(viewer)
    widget.reference_picker.value, widget.generated_picker.value = "rock", "generated"
    for name, box in widget.metric_boxes.items():
        box.value = name in metrics
    return widget


def test_metrics_widget_table_equals_pixel_metrics_and_adds_ssim_map(pair_viewer, nothreads):
    viewer, reference, generated, _ = pair_viewer
    hashes = digest(reference.data), digest(generated.data)
    widget = _widget(viewer)
    widget.run()
    assert widget.status.text() == "Done.", widget.status.text()
    ref, gen = np.asarray(reference.data), np.asarray(generated.data)
    window = percentile_window(ref, 0.5, 99.5)  # the widget's default range
    limits = (window.low, window.high)
    expected = {
        "ssim": pixel.ssim(ref, gen, data_range=limits).value,
        "psnr": pixel.psnr(ref, gen, data_range=limits).value,
    }
    assert widget.table.rowCount() == 2
    for index in range(2):
        metric = widget.table.item(index, 0).text()
        value_item = widget.table.item(index, 1)
        assert widget.table.item(index, 2).text() == "all"
        assert value_item.data(Qt.ItemDataRole.UserRole) == expected[metric]
        assert value_item.text() == format_value(expected[metric])
    assert 0 < expected["ssim"] < 1 and 10 < expected["psnr"] < 60
    ssim_layer = viewer.layers["generated ssim map 1"]
    assert tuple(ssim_layer.scale) == tuple(generated.scale)
    np.testing.assert_array_equal(ssim_layer.data, pixel.ssim_map(ref, gen, data_range=limits))
    assert ssim_layer.metadata["provenance"]["engine"] == "evaluate"
    assert (digest(reference.data), digest(generated.data)) == hashes


def test_metrics_widget_mask_regions_and_intensity_window(pair_viewer, nothreads):
    viewer, reference, generated, mask = pair_viewer
    ref, gen = np.asarray(reference.data), np.asarray(generated.data)
    widget = _widget(viewer)
    widget.mask_picker.value = "patch"
    widget.range_mode.value = RANGE_WINDOW
    widget.window_low.value, widget.window_high.value = 2000.0, 40000.0
    widget.run()
    rows = {(row["metric"], row["region"]): row["value"] for row in widget.rows}
    assert set(rows) == {(m, r) for m in ("ssim", "psnr") for r in ("inside", "outside")}
    for region in ("inside", "outside"):
        kwargs = {"data_range": (2000.0, 40000.0), "mask": mask, "region": region}
        assert rows[("ssim", region)] == pixel.ssim(ref, gen, **kwargs).value
        assert rows[("psnr", region)] == pixel.psnr(ref, gen, **kwargs).value
    assert rows[("ssim", "inside")] < rows[("ssim", "outside")]  # the flat patch is worse
    widget.region.value = "inside"
    widget.run()
    assert [row["region"] for row in widget.rows] == ["inside", "inside"]
    assert widget.table.rowCount() == 2


def test_metrics_widget_copy_and_export_carry_the_table_values(
    pair_viewer, nothreads, qtbot, tmp_path
):
    viewer, *_ = pair_viewer
    widget = _widget(viewer)
    qtbot.addWidget(widget)
    widget.run()
    rows = widget.rows
    values = {row["metric"]: row["value"] for row in rows}

    widget.copy_button.click()
    lines = QGuiApplication.clipboard().text().strip().splitlines()
    assert lines[0].split("\t") == ["metric", "value", "region", "details", "note"]
    assert {line.split("\t")[0]: float(line.split("\t")[1]) for line in lines[1:]} == values

    widget.table.selectRow(1)
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(widget.table, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    copied = QGuiApplication.clipboard().text().strip().splitlines()
    assert len(copied) == 2 and copied[1].split("\t")[0] == rows[1]["metric"]

    csv_path = widget.export(tmp_path / "metrics.csv")
    with csv_path.open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert {row["metric"]: float(row["value"]) for row in table} == values
    details = json.loads(table[0]["details"])
    low, high = details["window"]  # default: the reference's 0.5-99.5 percentile window
    assert details["data_range"] == pytest.approx(high - low) and high - low < 65535

    json_path = widget.export(tmp_path / "metrics.json")
    record = json.loads(json_path.read_text(encoding="utf-8"))
    assert {row["metric"]: row["value"] for row in record["table"]} == values
    assert record["engine"] == "evaluate"
    assert record["source"]["generated"]["layer"] == "generated"


def test_export_functions_write_nan_and_inf_rows_readably(tmp_path):
    rows = [
        {"metric": "psnr", "value": math.inf, "region": "all", "details": {}, "note": ""},
        {"metric": "lpips", "value": math.nan, "region": "all", "details": {}, "note": "skipped"},
    ]
    with write_rows_csv(rows, tmp_path / "t.csv").open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert math.isinf(float(table[0]["value"])) and math.isnan(float(table[1]["value"]))
    assert table[1]["note"] == "skipped"
    record = json.loads(write_rows_json(rows, tmp_path / "t.json").read_text(encoding="utf-8"))
    assert [row["value"] for row in record["table"]] == ["inf", None]
    assert rows_to_tsv(rows, header=False).splitlines()[1].split("\t")[:2] == ["lpips", "nan"]


def test_metrics_widget_threaded_shows_missing_lpips_weights_as_a_note_row(
    pair_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_SCIGEN_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    viewer, *_ = pair_viewer
    widget = _widget(viewer, metrics=("ssim", "lpips"))
    job = widget.run()
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    assert job.outcome == "done", widget.status.text()
    lpips_rows = [row for row in widget.rows if row["metric"] == "lpips"]
    assert len(lpips_rows) == 1 and math.isnan(lpips_rows[0]["value"])
    assert "alexnet-owt-7be5be79.pth" in lpips_rows[0]["note"]
    assert widget.table.item(1, 1).text() == "n/a"
    assert [row["metric"] for row in widget.rows] == ["ssim", "lpips"]
    assert "generated lpips map 1" not in viewer.layers


def test_metrics_widget_reports_shape_mismatch_without_adding_layers(rock_viewer, nothreads):
    viewer, _ = rock_viewer
    viewer.add_image(np.zeros((12, 90, 96), np.uint16), name="generated")
    widget = _widget(viewer)
    n_layers = len(viewer.layers)
    widget.run()
    assert "compare pixel by pixel" in widget.status.text()
    assert len(viewer.layers) == n_layers and widget.table.rowCount() == 0


def test_metrics_of_a_rebuilt_volume_default_to_the_rebuilt_slices(rock_viewer, nothreads):
    from napari_scigen._qt._interpolate_widget import InterpolateWidget
    from napari_scigen._qt._metrics_widget import REGION_REBUILT, REGION_WHOLE

    viewer, reference = rock_viewer
    interpolate = InterpolateWidget(viewer)
    interpolate.image_picker.value = "rock"
    interpolate.missing.value = "3, 6-7"
    interpolate.run()
    widget = MetricsWidget(viewer)
    widget.reference_picker.value, widget.generated_picker.value = "rock", "rock linear 1"
    assert widget.region.native.isVisibleTo(widget) and widget.region.value == REGION_REBUILT
    for name, box in widget.metric_boxes.items():
        box.value = name in ("ssim", "psnr")
    widget.run()
    ref = np.asarray(reference.data)
    gen = np.asarray(viewer.layers["rock linear 1"].data)
    limits = percentile_window(ref, 0.5, 99.5)
    window = (limits.low, limits.high)
    rebuilt = [3, 6, 7]
    rows = {row["metric"]: row for row in widget.rows}
    assert rows["ssim"]["region"] == "rebuilt slices"
    assert rows["ssim"]["value"] == pytest.approx(
        pixel.ssim(ref[rebuilt], gen[rebuilt], data_range=window).value
    )
    flattering = pixel.ssim(ref, gen, data_range=window).value
    assert rows["ssim"]["value"] < flattering  # the kept slices are copies
    ssim_map = viewer.layers["rock linear 1 ssim map 1"]  # on the rebuilt slices, in place
    assert ssim_map.data.shape == gen.shape and np.isnan(ssim_map.data[0]).all()
    assert np.isfinite(ssim_map.data[rebuilt]).all()
    widget.region.value = REGION_WHOLE
    widget.run()
    assert {row["metric"]: row["value"] for row in widget.rows}["ssim"] == pytest.approx(flattering)


def test_gmsd_and_morphology_rows_honour_the_mask_region(pair_viewer, nothreads):
    viewer, *_ = pair_viewer
    widget = _widget(viewer, metrics=("gmsd", "morphology"))
    widget.mask_picker.value = "patch"
    widget.region.value = "inside"
    widget.run()
    assert widget.status.text() == "Done.", widget.status.text()
    assert {row["region"] for row in widget.rows} == {"inside"}
    metrics = {row["metric"] for row in widget.rows}
    assert {"gmsd", "porosity"} <= metrics
    porosity = next(i for i, row in enumerate(widget.rows) if row["metric"] == "porosity")
    assert "error" in widget.table.item(porosity, 1).text()  # the error is in the value cell


def test_compare_engines_opens_the_compare_dock_on_the_reference_and_its_mask(pair_viewer):
    viewer, *_ = pair_viewer
    widget = _widget(viewer)
    viewer.window.add_dock_widget(widget, name="Metrics")
    widget.mask_picker.value = "patch"
    assert widget.compare_button.toolTip()
    widget.compare_button.click()
    from napari_scigen._qt._base import open_widgets
    from napari_scigen._qt._compare_widget import CompareWidget

    (compare,) = open_widgets(viewer, CompareWidget)
    assert compare.volume_picker.value == "rock" and compare.mask_picker.value == "patch"
    assert widget.open_compare() is compare  # a second press reuses the open dock
    assert "Compare engines opened on 'rock'" in widget.status.text()
