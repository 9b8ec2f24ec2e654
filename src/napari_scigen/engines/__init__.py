"""Generative and classical engines. Each exposes generator functions that yield
:class:`napari_scigen.core.progress.Progress` events and return an
:class:`napari_scigen.core.result.EngineResult`."""
