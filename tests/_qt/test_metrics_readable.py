"""A readable Metrics dock (issue 21, finding 8): the details and notes the narrow table
columns cut with "…" are shown in full under the table, and a generated layer of another
shape (a z-upsampled volume) is refused by naming both shapes, not slice indices."""

from __future__ import annotations

import numpy as np

from napari_scigen._qt._metrics_widget import REGION_REBUILT, MetricsWidget

SKIP = (
    "skipped: LPIPS needs the AlexNet weights alexnet-owt-7be5be79.pth in "
    "$TORCH_HOME/hub/checkpoints (offline)"
)


def test_details_and_notes_cut_in_the_table_are_shown_in_full(rock_viewer):
    viewer, _ = rock_viewer
    widget = MetricsWidget(viewer)
    rows = [
        {"metric": "ssim", "value": 0.91, "region": "all", "details": {"slices": 4}, "note": ""},
        {"metric": "lpips", "value": float("nan"), "region": "all", "details": {}, "note": SKIP},
    ]
    widget.show_rows(rows)
    assert SKIP in widget.notes.text() and "ssim (all): slices" in widget.notes.text()
    widget.table.selectRow(1)
    assert widget.notes.text() == f"lpips (all): {SKIP}"


def test_a_generated_layer_of_another_shape_is_refused_by_its_shape(rock_viewer, nothreads):
    viewer, image = rock_viewer
    upsampled = np.repeat(np.asarray(image.data), 2, axis=0)[:-1]  # 12 -> 23 slices
    provenance = {"extra": {"synthesized_indices": list(range(1, 23, 2))}}
    viewer.add_image(upsampled, name="rock x2", metadata={"provenance": provenance})
    widget = MetricsWidget(viewer)
    widget.reference_picker.value = "rock"
    widget.generated_picker.value = "rock x2"
    assert widget.region.value == REGION_REBUILT
    widget.run()
    text = widget.status.text()
    assert "(23, 96, 96)" in text and "(12, 96, 96)" in text, text
    assert "outside" not in text


def test_generated_defaults_to_a_layer_of_the_references_shape_not_samples(rock_viewer):
    viewer, image = rock_viewer
    viewer.add_image(np.asarray(image.data).copy(), name="rock linear 1")
    viewer.add_image(np.zeros((8, 16, 16), np.uint16), name="stylegan samples 1")
    widget = MetricsWidget(viewer)
    assert widget.reference_picker.value == "rock"
    assert widget.generated_picker.value == "rock linear 1"
