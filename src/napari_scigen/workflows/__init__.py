"""Workflows that run engines through :mod:`napari_scigen.api` and then score them:
held-out validation, the demo (and, later, engine comparison and batch runs)."""
