"""StyleGAN2 engine: our own implementation (from the papers) for grayscale microCT slices.

Importing this package does not import torch; the names below are loaded on
first access.

* :class:`StyleGANConfig`, :class:`Generator`, :class:`Discriminator` (``networks``)
* :class:`TrainParams`, :func:`run_train_stylegan` (``train``)
* :func:`load_generator`, :func:`export_generator` (``checkpoint``)
* :func:`run_project` (``project``): GAN inversion
* :func:`run_interpolate_stylegan` (``interpolate``): slice interpolation
* :func:`run_sample_slices`, :func:`latent_walk` (``sample``)
* :func:`default_generator_path`, :func:`load_default_generator` (``default``)
* :func:`import_nvlabs_state_dict` (``nvlabs``): map a stylegan2-ada-pytorch
  ``G_ema`` state dict onto our generator
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "StyleGANConfig": "networks",
    "Generator": "networks",
    "Discriminator": "networks",
    "TrainParams": "train",
    "TrainResult": "train",
    "run_train_stylegan": "train",
    "load_generator": "checkpoint",
    "export_generator": "checkpoint",
    "run_project": "project",
    "ProjectionResult": "project",
    "run_interpolate_stylegan": "interpolate",
    "run_sample_slices": "sample",
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
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
