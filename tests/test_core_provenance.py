import json
from dataclasses import dataclass

import numpy as np

from napari_scigen.core.provenance import make_provenance, provenance_json


@dataclass(frozen=True)
class _Params:
    steps: int = 5
    window: tuple = (0.5, 99.5)


def test_provenance_records_engine_params_seed_and_versions():
    record = make_provenance(
        "demo-engine", _Params(), model="some/model", seed=[1, 2], source={"shape": (2, 3)}
    )
    assert record["engine"] == "demo-engine"
    assert record["params"] == {"steps": 5, "window": [0.5, 99.5]}
    assert record["model"] == "some/model"
    assert record["seed"] == [1, 2]
    assert record["source"]["shape"] == [2, 3]
    assert "numpy" in record["software"] and "python" in record["software"]


def test_provenance_json_handles_numpy_values():
    record = make_provenance("x", {"value": np.float32(0.5), "n": np.int64(3)})
    assert json.loads(provenance_json(record))["params"] == {"n": 3, "value": 0.5}
