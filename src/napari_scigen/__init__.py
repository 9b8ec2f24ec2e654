"""napari-scigen: synthesize and verify scientific images in microCT volumes.

The package root imports neither torch nor Qt. Use :mod:`napari_scigen.api` for
headless work and the ``napari-scigen`` command for the CLI.
"""

from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-scigen")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
