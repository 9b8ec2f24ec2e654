"""Declarations several params classes share (like :func:`~.declare.device_param`).

A field that means the same thing in several engines or workflows is declared by one
helper here, so its bounds (and its help, where the engines say the same) cannot drift:
each class passes only what is its own (the default, a more specific help sentence).

Examples
--------
>>> from dataclasses import dataclass
>>> from napari_scigen.core.params import EngineParams
>>> @dataclass(frozen=True)
... class TrainParams(EngineParams):
...     train_steps: int = train_steps_param(500)
...     learning_rate: float = learning_rate_param(1e-3)
>>> TrainParams(learning_rate=0)
Traceback (most recent call last):
...
napari_scigen.core.params.declare.ParameterError: learning_rate must be > 0, got 0.0
"""

from __future__ import annotations

from typing import Any

from .declare import param

#: Largest seed a params class accepts (torch and NumPy generators both take it).
MAX_SEED = 2**31 - 1


def learning_rate_param(default: float, help: str = "Adam learning rate", **kwargs: Any) -> Any:  # noqa: A002
    """A ``learning_rate`` field: a number > 0 (``kwargs``: ``max``, ``advanced``, ...)."""
    return param(default, help=help, min=0.0, min_exclusive=True, **kwargs)


def train_steps_param(
    default: int,
    help: str = "total optimisation steps (a resumed run continues up to this)",  # noqa: A002
    **kwargs: Any,
) -> Any:
    """The ``train_steps`` field of a resumable training run (former name ``steps``)."""
    options = {"label": "total steps", "aliases": ("steps",), **kwargs}
    return param(default, help=help, min=1, **options)


def count_param(default: int, help: str = "number of slices to generate", **kwargs: Any) -> Any:  # noqa: A002
    """A ``count`` field: how many outputs, at least 1."""
    return param(default, help=help, min=1, **kwargs)


def seed_param(help: str, default: int = 0, **kwargs: Any) -> Any:  # noqa: A002
    """A ``seed`` field: ``0`` ... :data:`MAX_SEED`."""
    return param(default, help=help, min=0, max=MAX_SEED, **kwargs)
