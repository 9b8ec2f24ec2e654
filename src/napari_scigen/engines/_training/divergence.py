"""A loss that became NaN or infinite: a user error with the settings to change."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from ...core.validation import InvalidInputError


class TrainingDivergedError(InvalidInputError, FloatingPointError):
    """A loss became NaN or infinite: a user error (settings to change), in every trainer.

    Every front-end reports it in one line (the command line exits 2), with the options
    it suggests spelled its own way (``options``); it stays a ``FloatingPointError`` for
    code that catches that.
    """


def smaller(name: str, now: float) -> str:
    """``"learning_rate=0.0002 (now 0.002)"``: a tenth of an option's value, to suggest."""
    return f"{name}={now / 10:g} (now {now:g})"


def larger(name: str, now: float) -> str:
    """``"r1_gamma=1 (now 0.1)"``: ten times an option's value, to suggest."""
    return f"{name}={now * 10:g} (now {now:g})"


def check_finite(
    losses: Mapping[str, float | None],
    *,
    step: int,
    what: str,
    hint: str,
    options: Iterable[str] = (),
    last_checkpoint: Path | None = None,
) -> None:
    """Raise :class:`TrainingDivergedError` when one of ``losses`` is NaN or infinite.

    Parameters
    ----------
    losses : mapping of str to float or None
        This step's losses by name; ``None`` marks a term not computed at this step.
    step : int
        The step (counted from 1) the losses belong to.
    what : str
        What was training, for the message (``"StyleGAN"``, ``"learned inpainting"``...).
    hint : str
        What to change, naming options as keyword arguments
        (``"run again with learning_rate=0.0002 (now 0.002)"``; :func:`smaller`).
    options : iterable of str
        The options ``hint`` names (front-ends respell them; see
        :mod:`napari_scigen.core.validation`).
    last_checkpoint : pathlib.Path, optional
        The newest good checkpoint, named in the message when there is one.

    Raises
    ------
    TrainingDivergedError
        One line: the step, the losses, the hint and the last good checkpoint.
    """
    computed = {name: value for name, value in losses.items() if value is not None}
    if all(math.isfinite(value) for value in computed.values()):
        return
    values = ", ".join(f"{name}: {value}" for name, value in computed.items())
    kept = ""
    if last_checkpoint:
        kept = f"; the last good checkpoint {last_checkpoint} is kept (a run resuming there continues from it)"
    raise TrainingDivergedError(
        f"{what}: training diverged at step {step} ({values}); {hint}{kept}", options=tuple(options)
    )
