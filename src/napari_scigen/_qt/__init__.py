"""Thin Qt widgets. Everything here runs engines from :mod:`napari_scigen.engines`
through :mod:`napari_scigen._qt._runner`."""
