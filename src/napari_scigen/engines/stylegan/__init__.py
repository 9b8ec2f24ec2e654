"""StyleGAN2 engine: our own implementation (from the papers) for grayscale microCT slices.

Importing this package does not import torch; the names below are loaded on
first access.

* :class:`StyleGANInterpolateParams`, :class:`StyleGANTrainParams`,
  :class:`StyleGANSampleParams`, :class:`StyleGANWalkParams` (``params``): the
  engines' parameters, declared once (CLI flags and widget fields come from them)
* :class:`StyleGANConfig`, :class:`Generator`, :class:`Discriminator` (``networks``)
* :func:`run_train_stylegan` (``train``; it returns the shared
  :class:`~napari_scigen.engines._training.result.TrainResult`)
* :func:`load_generator`, :func:`save_generator`, :func:`export_generator` (``checkpoint``)
* :func:`run_project` (``project``): GAN inversion
* :func:`run_interpolate_stylegan` (``interpolate``): slice interpolation
* :func:`run_sample_slices`, :func:`run_latent_walk`, :func:`latent_walk` (``sample``)

The engines are registered in :mod:`napari_scigen.engines.registry` and reached
through :mod:`napari_scigen.api` (``api.interpolate(..., method="stylegan")``,
``api.train``, ``api.sample(method="stylegan" | "stylegan-walk")``).
* :func:`default_generator_path`, :func:`load_default_generator` (``default``)
* :func:`import_nvlabs_state_dict` (``nvlabs``): map a stylegan2-ada-pytorch
  ``G_ema`` state dict onto our generator
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "StyleGANInterpolateParams": "params",
    "StyleGANTrainParams": "params",
    "StyleGANSampleParams": "params",
    "StyleGANWalkParams": "params",
    "StyleGANConfig": "networks",
    "Generator": "networks",
    "Discriminator": "networks",
    "run_train_stylegan": "train",
    "load_generator": "checkpoint",
    "save_generator": "checkpoint",
    "export_generator": "checkpoint",
    "run_project": "project",
    "ProjectionResult": "project",
    "run_interpolate_stylegan": "interpolate",
    "run_sample_slices": "sample",
    "run_latent_walk": "sample",
    "latent_walk": "sample",
    "default_generator_path": "default",
    "load_default_generator": "default",
    "resolve_generator": "default",
    "import_nvlabs_state_dict": "nvlabs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        from .._training import moved_from

        # TrainResult moved to engines._training.result (deprecated here for one release)
        return moved_from(__name__, result="TrainResult")(name)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
