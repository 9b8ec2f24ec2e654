"""The docks' *Help* buttons: open the matching page of the documentation.

The docs are the Markdown pages of the repository's ``docs/`` folder. An editable
install (a checkout) opens its own copy, the one matching the code, offline; an installed
wheel opens the ``Documentation`` address of the package metadata
(``[project.urls]`` in ``pyproject.toml``) plus the page. With neither, the button is
disabled and its tooltip says so.
"""

from __future__ import annotations

from pathlib import Path

#: The docs page (and section) of each dock, by widget class name.
HELP_PAGES = {
    "MaskWidget": "user_guide.md#2-paint-a-mask",
    "InpaintWidget": "user_guide.md#3-inpaint",
    "InterpolateWidget": "user_guide.md#4-interpolate-slices",
    "MetricsWidget": "user_guide.md#5-compare-with-metrics",
    "StyleGANWidget": "user_guide.md#6-stylegan-new-slices-latent-walks-training",
    "DiffEditWidget": "user_guide.md#7-diffedit-text-guided-editing-of-a-masked-region",
    "EditWidget": "user_guide.md#text-guided-editing-every-edit-engine-in-one-dock",
    "ControlNetWidget": "user_guide.md#8-controlnet-structure-conditioned-generation",
    "FinetuneWidget": "models.md",
    "CompareWidget": "compare.md",
    "GenerateWidget": "user_guide.md#generate-slices",
    "AutoMaskWidget": "user_guide.md#automatic-mask",
    "TrainWidget": "user_guide.md#train-a-model",
    "SampleWidget": "user_guide.md#sample-a-model",
}
#: The metadata label of the documentation address.
DOCS_LABEL = "Documentation"


def local_docs() -> Path | None:
    """The ``docs/`` folder of the checkout this package runs from (editable install)."""
    import napari_scigen

    folder = Path(napari_scigen.__file__).resolve().parents[2] / "docs"
    return folder if (folder / "user_guide.md").is_file() else None


def docs_base_url() -> str | None:
    """The ``Documentation`` address in the installed package's metadata, if any."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        entries = metadata("napari-scigen").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip().lower() == DOCS_LABEL.lower() and url.strip():
            return url.strip()
    return None


def help_url(page: str) -> str | None:
    """Where the docs ``page`` (``"user_guide.md#3-inpaint"``) is read: a ``file://`` URL
    of the local docs, else the documentation address plus the page, else ``None``."""
    name, _, anchor = page.partition("#")
    folder = local_docs()
    if folder is not None and (folder / name).is_file():
        url = (folder / name).as_uri()
        return f"{url}#{anchor}" if anchor else url
    base = docs_base_url()
    if base is None:
        return None
    return f"{base.rstrip('/')}/{page}"


def help_button(widget_class_name: str):
    """A small *Help* button opening the dock's docs page in the browser."""
    from qtpy.QtCore import Qt, QUrl
    from qtpy.QtGui import QCursor, QDesktopServices
    from qtpy.QtWidgets import QPushButton

    page = HELP_PAGES.get(widget_class_name, "user_guide.md")
    url = help_url(page)
    button = QPushButton("Help")
    button.setObjectName("scigen_help")
    button.setFlat(True)
    button.setCursor(QCursor(Qt.CursorShape.PointingHandCursor))  # reads as a link
    if url is None:
        button.setEnabled(False)
        button.setToolTip(
            "the documentation is not installed with this package and no documentation "
            "address is recorded; see the project's docs/ folder"
        )
        return button
    button.setToolTip(f"open this dock's documentation:\n{url}")
    button.url = url
    button.clicked.connect(lambda: QDesktopServices.openUrl(QUrl(url)))
    return button
