"""Learned-engine weights files: each way a user's file can be wrong gets its own message."""

from __future__ import annotations

import pickle

import pytest

from napari_scigen.core.validation import InvalidInputError
from napari_scigen.engines.learned.networks import UNetConfig, build_network
from napari_scigen.engines.learned.store import load_weights, save_weights


def test_missing_weights_file_is_said_to_be_missing(tmp_path):
    with pytest.raises(InvalidInputError, match=r"weights .*absent\.safetensors do not exist"):
        load_weights(tmp_path / "absent.safetensors")


def test_a_pickle_without_its_json_is_not_called_missing(tmp_path):
    path = tmp_path / "p.pt"
    path.write_bytes(pickle.dumps({"not": "weights"}))
    with pytest.raises(InvalidInputError) as caught:
        load_weights(path)
    message = str(caught.value)
    assert "do not exist" not in message
    assert "no p.json beside them" in message
    assert "\n" not in message


def test_saved_weights_load_back_into_the_same_network(tmp_path):
    import torch

    network = build_network(UNetConfig(in_channels=2, base_channels=8))
    path = save_weights(network, tmp_path / "w", {})
    loaded, _record = load_weights(path)
    expected, actual = network.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)
