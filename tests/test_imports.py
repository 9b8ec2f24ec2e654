"""The manifest is valid, every contribution imports, and loading it imports no torch.

The Qt-free layering is tested in test_architecture.py."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_scigen" / "napari.yaml"


def _python_names():
    manifest = yaml.safe_load(MANIFEST.read_text())
    return [command["python_name"] for command in manifest["contributions"]["commands"]]


def test_manifest_validates_with_npe2():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-scigen"
    assert manifest.contributions.widgets and manifest.contributions.readers


@pytest.mark.parametrize("python_name", _python_names())
def test_every_manifest_command_imports(python_name):
    module_name, attribute = python_name.split(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute))


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_manifest_load_and_cli_parser_do_not_import_torch_or_diffusers():
    code = """
import sys, yaml, importlib
from pathlib import Path
import napari_scigen, napari_scigen.cli
napari_scigen.cli.build_parser()
import napari_scigen._napari._reader, napari_scigen._napari._writer, napari_scigen._napari._sample_data
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "lpips") if m in sys.modules)
print("heavy:", heavy)
"""
    completed = _run_isolated(code)
    assert completed.returncode == 0, completed.stderr
    assert "heavy: []" in completed.stdout
