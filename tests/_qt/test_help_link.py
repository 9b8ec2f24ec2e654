"""Every dock has a *Help* button opening its docs page (issue 21, finding 12)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from napari_scigen._qt import _help

MANIFEST = Path(_help.__file__).resolve().parents[1] / "napari.yaml"


def _dock_classes():
    manifest = yaml.safe_load(MANIFEST.read_text())
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    for widget in manifest["contributions"]["widgets"]:
        module, _, name = commands[widget["command"]].partition(":")
        yield getattr(importlib.import_module(module), name)


def _anchors(markdown: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


def test_every_dock_has_a_help_button_opening_its_docs_section(make_napari_viewer, monkeypatch):
    opened = []
    monkeypatch.setattr(
        "qtpy.QtGui.QDesktopServices.openUrl", lambda url: opened.append(url.toString())
    )
    viewer = make_napari_viewer()
    docs = _help.local_docs()
    assert docs is not None  # the tests run from a checkout
    for widget_class in _dock_classes():
        widget = widget_class(viewer)
        button = widget.help_button
        assert button.isEnabled() and button.text() == "Help", widget_class.__name__
        button.click()
        url = opened[-1]
        page, _, anchor = url.removeprefix(docs.as_uri() + "/").partition("#")
        assert (docs / page).is_file(), url
        assert not anchor or anchor in _anchors(docs / page), (widget_class.__name__, anchor)


def test_an_installed_package_opens_its_documentation_address(monkeypatch):
    monkeypatch.setattr(_help, "local_docs", lambda: None)
    monkeypatch.setattr(_help, "docs_base_url", lambda: "https://example.org/scigen/docs/")
    assert _help.help_url("user_guide.md#3-inpaint") == (
        "https://example.org/scigen/docs/user_guide.md#3-inpaint"
    )


def test_without_docs_or_address_the_button_is_disabled_and_says_why(qtbot, monkeypatch):
    monkeypatch.setattr(_help, "local_docs", lambda: None)
    monkeypatch.setattr(_help, "docs_base_url", lambda: None)
    button = _help.help_button("InpaintWidget")
    qtbot.addWidget(button)
    assert not button.isEnabled() and "docs/" in button.toolTip()


@pytest.mark.parametrize("name", sorted(_help.HELP_PAGES))
def test_help_pages_name_existing_docs_sections(name):
    page, _, anchor = _help.HELP_PAGES[name].partition("#")
    path = _help.local_docs() / page
    assert path.is_file() and (not anchor or anchor in _anchors(path))
