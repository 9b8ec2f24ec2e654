import numpy as np

from napari_scigen._napari.layers import next_layer_name, result_to_layer_tuples
from napari_scigen.core.result import EngineResult


def test_next_layer_name_counts_up_per_source_and_engine():
    assert next_layer_name([], "rock", "inpaint") == "rock inpaint 1"
    assert (
        next_layer_name(["rock inpaint 1", "rock inpaint 2"], "rock", "inpaint") == "rock inpaint 3"
    )


def test_result_layers_carry_scale_translate_and_provenance():
    result = EngineResult(
        data=np.zeros((2, 3, 4, 5), np.uint16),
        provenance={"engine": "x"},
        labels={"mask": np.zeros((3, 4, 5), np.uint8)},
    )
    tuples = result_to_layer_tuples(
        result,
        name="vol x 1",
        scale=(2.0, 0.5, 0.5),
        translate=(1.0, 0, 0),
        source_metadata={"voxel_unit": "um"},
    )
    (data, kwargs, kind), (_, mask_kwargs, mask_kind) = tuples
    assert kind == "image" and mask_kind == "labels"
    assert kwargs["scale"] == (1.0, 2.0, 0.5, 0.5)  # variant axis gets unit scale
    assert kwargs["translate"] == (0.0, 1.0, 0.0, 0.0)
    assert kwargs["metadata"]["provenance"] == {"engine": "x"}
    assert kwargs["metadata"]["voxel_unit"] == "um"
    assert mask_kwargs["name"] == "vol x 1 mask" and mask_kwargs["scale"] == (2.0, 0.5, 0.5)
