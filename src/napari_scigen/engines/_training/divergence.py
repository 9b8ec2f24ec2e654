"""A loss that became NaN or infinite: a user error with the settings to change."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from ...core.validation import InvalidInputError


class TrainingDivergedError(FloatingPointError, InvalidInputError):
    """A loss became NaN or infinite: a user error (settings to change), in every trainer.

    Every front-end reports it in one line (the command line exits 2); it stays a
    ``FloatingPointError`` for code that catches that.
    """


def check_finite(
    losses: Mapping[str, float | None],
    *,
    step: int,
    what: str,
    hint: str,
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
        What to change (``"lower learning_rate (now 0.002)"``).
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
    values = ", ".join(f"{name}={value}" for name, value in computed.items())
    kept = f"; the last good checkpoint is {last_checkpoint}" if last_checkpoint else ""
    raise TrainingDivergedError(
        f"{what}: training diverged at step {step} ({values}); {hint}{kept}"
    )
