"""The package's layering: who may import whom, and what imports without the GUI stack.

Layers, bottom to top: ``core`` < ``metrics`` < ``engines`` < ``api`` < ``workflows`` <
front-ends (``_cli``/``cli``, ``_napari``, ``_qt``). A module may import from its own
layer or below, never above; ``_napari`` (napari glue) and ``_cli`` never import ``_qt``.
Every import counts, including the lazy ones inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_scigen"

LAYERS = {"core": 0, "metrics": 1, "engines": 2, "api": 3, "workflows": 4}
FRONT_ENDS = {"_cli": 5, "cli": 5, "_napari": 5, "_qt": 6}
RANK = {**LAYERS, **FRONT_ENDS}


def _component(module: str) -> str | None:
    """The top-level component of ``napari_scigen.<component>....``."""
    parts = module.split(".")
    if parts[0] != "napari_scigen" or len(parts) < 2:
        return None
    return parts[1]


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    """Every ``napari_scigen`` module ``path`` imports (absolute names)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            found += [n for n in names if n.startswith("napari_scigen")]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("napari_scigen")]
    return found


def _violations() -> list[str]:
    bad = []
    for path in PACKAGE.rglob("*.py"):
        source = _component(_module_name(path))
        if source not in RANK:
            continue
        for target_module in _imports(path):
            target = _component(target_module)
            if target not in RANK:
                continue
            upward = RANK[target] > RANK[source]
            sideways = source in ("_napari", "_cli", "cli") and target == "_qt"
            glue = source in ("_cli", "cli") and target == "_napari"
            if upward or sideways or glue:
                bad.append(f"{_module_name(path)} imports {target_module}")
    return sorted(bad)


def test_no_module_imports_from_a_layer_above_it():
    assert _violations() == []


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "napari_scigen"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "bad.py").write_text("from ..api import interpolate\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _violations() == ["napari_scigen.core.bad imports napari_scigen.api"]


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)


def test_headless_packages_import_with_napari_magicgui_and_qt_blocked():
    code = """
import sys
for name in ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt",
             "npe2"):
    sys.modules[name] = None  # any import of these now raises ImportError
import importlib, pkgutil
import napari_scigen
for package in ("core", "engines", "metrics", "workflows", "_cli"):
    pkg = importlib.import_module(f"napari_scigen.{package}")
    for info in pkgutil.walk_packages(pkg.__path__, f"napari_scigen.{package}."):
        importlib.import_module(info.name)
import napari_scigen.api, napari_scigen.cli
napari_scigen.cli.build_parser()
from napari_scigen.engines.registry import engines
for engine in engines():
    engine.params_class()
print("ok")
"""
    completed = _run_isolated(code)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().endswith("ok")


@pytest.mark.parametrize("extra", ["napari", "magicgui", "qtpy"])
def test_the_gui_stack_is_an_install_extra_not_a_dependency(extra):
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())["project"]
    names = [d.split(">")[0].split("[")[0].split("=")[0].strip() for d in project["dependencies"]]
    assert extra not in names
    assert any(d.startswith(extra) for d in project["optional-dependencies"]["napari"])
