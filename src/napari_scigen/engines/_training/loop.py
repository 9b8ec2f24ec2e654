"""The step loop every trainer shares: progress, history, checkpoints, cancel, divergence.

A trainer writes only its step function (one optimisation step, returning its losses)
and how to save a checkpoint; :func:`run_steps` does the rest, the same way for every
trainer: the cancel check before each step, the divergence check after it
(:func:`~.divergence.check_finite`), the loss history, previews every ``sample_every``
steps, a checkpoint every ``checkpoint_every`` steps, and a checkpoint of the work done
when the run is cancelled, interrupted or its generator closed
(:class:`checkpoint_on_cancel`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...core.progress import Cancelled, CancelToken, Progress, check_cancelled
from .divergence import check_finite

#: A step's losses by name (``None``: a term not computed at this step, recorded as NaN).
Losses = Mapping[str, float | None]


class checkpoint_on_cancel:  # noqa: N801 - used as a statement, like contextlib's
    """Save the work done when the block is cancelled, interrupted or its generator closed.

    Parameters
    ----------
    save : callable
        ``save()`` writes a checkpoint.
    worked : callable
        ``worked()`` says whether there is work to keep (a step done since the start).

    Notes
    -----
    :class:`~napari_scigen.core.progress.Cancelled` (a cancel token),
    ``KeyboardInterrupt`` (Ctrl-C) and ``GeneratorExit`` (the consumer closed the
    training generator) are re-raised after the checkpoint; any other error (a
    diverged loss) writes nothing, so the last good checkpoint stays the newest.
    """

    def __init__(self, save: Callable[[], Any], worked: Callable[[], bool]) -> None:
        self.save, self.worked = save, worked

    def __enter__(self) -> checkpoint_on_cancel:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        stopped = kind is not None and issubclass(
            kind, (Cancelled, GeneratorExit, KeyboardInterrupt)
        )
        if stopped and self.worked():
            self.save()
        return False


def gan_losses_text(losses: Losses) -> str:
    """``"G 0.693  D 1.386"``: the progress text of a GAN's generator and discriminator losses."""
    return f"G {losses['loss_G']:.3f}  D {losses['loss_D']:.3f}"


def _losses_text(losses: Losses) -> str:
    return "  ".join(f"{name} {value:.4f}" for name, value in losses.items() if value is not None)


def run_steps(
    step: Callable[[int], Losses],
    params,
    *,
    start_step: int,
    save: Callable[[int], Path],
    history: dict[str, list[float]],
    what: str,
    hint: str,
    options: Iterable[str] = (),
    last_checkpoint: Path | None = None,
    cancel: CancelToken | None = None,
    preview: Callable[[], np.ndarray] | None = None,
    describe: Callable[[Losses], str] = _losses_text,
) -> Generator[Progress, None, int]:
    """Run ``step`` from ``start_step`` until ``params.train_steps`` steps are done.

    Parameters
    ----------
    step : callable
        ``step(index) -> losses``: one optimisation step (``index`` counts from 0 over
        all resumed runs).
    params : Params
        The trainer's parameters: ``train_steps`` (the budget), ``checkpoint_every`` (a
        checkpoint every this many steps; the final one is the trainer's) and, with a
        ``preview``, ``sample_every``.
    start_step : int
        Steps done before (a resumed checkpoint's).
    save : callable
        ``save(steps_done) -> path`` writes a checkpoint.
    history : dict
        Receives ``"step"`` and each loss of every step (NaN for ``None``).
    what, hint, options
        For the divergence message (:func:`~.divergence.check_finite`).
    last_checkpoint : pathlib.Path, optional
        The resumed checkpoint: the last good one until this run writes another.
    cancel : CancelToken, optional
        Checked before every step.
    preview : callable, optional
        ``preview() -> image`` shown every ``params.sample_every`` steps and at the end.
    describe : callable
        ``describe(losses) -> text`` after ``"step i/n"`` in the progress message.

    Yields
    ------
    Progress
        One per step (one only, ``"already trained"``, when the budget is spent).

    Returns
    -------
    int
        Steps done in total (``start_step`` when there was nothing left to do).

    Raises
    ------
    TrainingDivergedError
        A loss became NaN or infinite (nothing is written).
    Cancelled
        The run was cancelled (a checkpoint of the work done is written first).
    """
    total = params.train_steps
    if start_step >= total:
        shown = preview() if preview is not None else None
        yield Progress(total, total, f"already trained for {start_step} steps", shown)
        return start_step
    done = start_step
    last = last_checkpoint

    def keep() -> None:
        save(done)

    with checkpoint_on_cancel(keep, lambda: done > start_step):
        while done < total:
            check_cancelled(cancel)
            losses = step(done)
            check_finite(
                losses, step=done + 1, what=what, hint=hint, options=options, last_checkpoint=last
            )
            done += 1
            history.setdefault("step", []).append(done)
            for name, value in losses.items():
                history.setdefault(name, []).append(float("nan") if value is None else value)
            shown = None
            if preview is not None and (done % params.sample_every == 0 or done == total):
                shown = preview()
            if done % params.checkpoint_every == 0 and done < total:
                last = save(done)
            yield Progress(done, total, f"step {done}/{total}  {describe(losses)}", shown)
    return done
