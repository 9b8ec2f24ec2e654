"""What every training engine returns (StyleGAN, DCGAN, LoRA fine-tuning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.result import EngineResult


@dataclass
class TrainResult(EngineResult):
    """An :class:`EngineResult` whose ``data`` is the final preview, plus the run's state.

    Attributes
    ----------
    checkpoint : pathlib.Path
        The last checkpoint written (the adapter folder for LoRA fine-tuning).
    step : int
        Steps done in total (over all resumed runs).
    history : dict of str to list of float
        ``"step"`` and the trainer's losses of this run (e.g. ``"loss_G"``, ``"loss_D"``,
        ``"r1"`` for StyleGAN, NaN on steps without that term; ``"loss"`` for LoRA).
    metadata : dict
        The metadata stored with the checkpoint.
    adopted_saved_config : bool
        The run resumed a checkpoint whose saved architecture replaced the requested one
        (``provenance["params"]`` holds the sizes used; front-ends show them).
    resumed_from : str or None
        The checkpoint folder name the run continued from (``None``: a new run).
    """

    checkpoint: Path | None = None
    step: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    adopted_saved_config: bool = False
    resumed_from: str | None = None

    @property
    def preview(self) -> np.ndarray:
        """The final preview in ``[0, 1]`` (the same array as ``data``)."""
        return self.data
