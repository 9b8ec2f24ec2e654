"""Stable Diffusion model location: offline errors before anything is written."""

from __future__ import annotations

import pytest

from napari_scigen.core.models import ModelNotAvailableError, missing_hub_model_message
from napari_scigen.engines.sd import hub


def test_locate_model_offline_hub_id_fails_short_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as info:
        hub.locate_model(
            "someone/not-cached-model",
            what="Stable Diffusion",
            index_file="model_index.json",
            local_files_only=False,
        )
    message = str(info.value)
    assert message == missing_hub_model_message("someone/not-cached-model", "Stable Diffusion")
    assert len(message.splitlines()) <= 8
    assert not (tmp_path / "hf").exists()


def test_locate_model_rejects_missing_and_incomplete_local_directories(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        hub.locate_model(
            str(tmp_path / "nope" / "model"),
            what="ControlNet",
            index_file="config.json",
            local_files_only=True,
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="config.json"):
        hub.locate_model(
            str(tmp_path / "empty"),
            what="ControlNet",
            index_file="config.json",
            local_files_only=True,
        )


def test_locate_model_accepts_a_complete_local_directory(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    source = hub.locate_model(
        str(tmp_path), what="Stable Diffusion", index_file="model_index.json", local_files_only=True
    )
    assert source.is_local and source.location == str(tmp_path.resolve())


def test_unavailable_errors_are_recognised_through_cause_chain():
    class LocalEntryNotFoundError(Exception):
        pass

    try:
        try:
            raise LocalEntryNotFoundError("not in cache")
        except LocalEntryNotFoundError as inner:
            raise OSError("Error no file named model_index.json") from inner
    except OSError as outer:
        assert hub._is_unavailable_error(outer)
    assert not hub._is_unavailable_error(ValueError("shape mismatch"))
