"""Training infrastructure shared by every trainer (StyleGAN, DCGAN, LoRA, learned engines).

Importing this package imports no torch. One module per job:

* :mod:`.dataset`: :class:`~.dataset.SliceDataset`, random (cropped) slices of a
  windowed volume;
* :mod:`.augment`: :func:`~.augment.random_dihedral` (real slices) and
  :func:`~.augment.diff_augment` (before a discriminator);
* :mod:`.checkpoint`: the checkpoint layout (``checkpoint-<step>/`` with safetensors,
  a ``weights_only`` train state and JSON), save / load / latest / prune,
  :class:`~.checkpoint.CheckpointError`;
* :mod:`.resume`: what a run continues from and the refusal to resume on other data
  (content identity of the training volume, :mod:`napari_scigen.core.io.identity`);
* :mod:`.divergence`: :class:`~.divergence.TrainingDivergedError`, a user error;
* :mod:`.loop`: the step loop (progress, history, periodic checkpoints, a checkpoint
  when the run is cancelled), so a trainer keeps only its step function;
* :mod:`.hardware`: :func:`~.hardware.hardware_description`, recorded in checkpoints;
* :mod:`.preview`: :func:`~.preview.preview_grid` of generated slices;
* :mod:`.result`: :class:`~.result.TrainResult`, what every training engine returns.
"""

from __future__ import annotations

import importlib

#: The modules of this package (for :func:`moved_attribute`).
_PACKAGE = __name__


def moved_from(where: str, **modules: str):
    """The ``__getattr__`` of a module whose names moved here (kept for one release).

    ``__getattr__ = moved_from(__name__, dataset="SliceDataset", hardware="cpu_model
    hardware_description")``: each access of a moved name warns
    (``DeprecationWarning``) and returns the object of this package.

    Parameters
    ----------
    where : str
        The former module's name.
    **modules : str
        For each module of this package, the names (space-separated) that moved to it.

    Returns
    -------
    callable
        ``__getattr__(name)``; it raises ``AttributeError`` for any other name.
    """
    moves = {name: module for module, names in modules.items() for name in names.split()}

    def __getattr__(name: str):
        module = moves.get(name)
        if module is None:
            raise AttributeError(f"module {where!r} has no attribute {name!r}")
        from ...core.params.declare import warn_deprecated

        warn_deprecated(name, f"{_PACKAGE}.{module}.{name}", where)
        return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name)

    return __getattr__
