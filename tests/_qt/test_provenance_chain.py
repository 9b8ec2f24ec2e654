"""Provenance names its inputs and keeps the history (issue 21, finding 12): a result
records the source layer and file and the mask's identity, and a chain of edits (scan,
inpainting, interpolation) survives saving and reopening."""

from __future__ import annotations

import numpy as np

from napari_scigen._napari._reader import read_layers
from napari_scigen._napari._writer import write_image
from napari_scigen._qt._inpaint_widget import InpaintWidget
from napari_scigen._qt._interpolate_widget import InterpolateWidget
from napari_scigen._qt._save import layer_attributes

SCAN = {"engine": "read", "source": {"file": "/data/rock.tif"}}


def test_results_name_their_inputs_and_chain_their_history_through_a_file(
    rock_viewer, nothreads, tmp_path
):
    viewer, image = rock_viewer
    image.metadata["provenance"] = SCAN
    mask = np.zeros(image.data.shape, np.uint8)
    mask[4, 30:40, 30:40] = 1
    viewer.add_labels(mask, name="rock mask", scale=image.scale)
    inpaint = InpaintWidget(viewer)
    inpaint.method.value = "biharmonic"
    inpaint.run()
    (filled,) = inpaint.new_layers
    record = filled.metadata["provenance"]
    assert record["inputs"]["source"]["layer"] == "rock"
    assert record["inputs"]["mask"]["layer"] == "rock mask"
    assert record["inputs"]["mask"]["masked_pixels"] == 100
    assert len(record["inputs"]["mask"]["sha256"]) == 64
    assert record["history"] == [SCAN]

    interpolate = InterpolateWidget(viewer)
    interpolate.image_picker.value = filled.name
    interpolate.missing.value = "6"
    interpolate.run()
    (rebuilt,) = interpolate.new_layers
    history = rebuilt.metadata["provenance"]["history"]
    assert [entry["engine"] for entry in history] == ["read", record["engine"]]
    assert "history" not in history[1]  # each step once, in order

    (written,) = write_image(str(tmp_path / "rebuilt.tif"), rebuilt.data, layer_attributes(rebuilt))
    (_, kwargs, _) = read_layers(written)[0]
    reopened = kwargs["metadata"]["provenance"]
    assert [entry["engine"] for entry in reopened["history"]] == ["read", record["engine"]]
    assert reopened["inputs"]["source"]["layer"] == filled.name
