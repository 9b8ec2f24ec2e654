"""Progress events, cooperative cancellation and the generator drain.

Every engine is written as a generator function::

    def run_something(data, ..., cancel=None) -> Generator[Progress, None, EngineResult]:
        for i in range(n):
            check_cancelled(cancel)
            ...
            yield Progress(i + 1, n, "slice 3/10")
        return EngineResult(...)

The headless API calls :func:`drain`; the napari widgets run the same generator in
a ``thread_worker`` (see :mod:`napari_scigen._qt._runner`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

R = TypeVar("R")


class Cancelled(Exception):
    """Raised inside an engine when its :class:`CancelToken` was set.

    Not a ``RuntimeError`` on purpose: superqt treats a ``RuntimeError`` from a worker as
    a deleted Qt object and then never emits ``finished``.
    """


@dataclass(frozen=True)
class Progress:
    """One progress event.

    Parameters
    ----------
    step : int
        Steps done so far (``0 <= step <= total``).
    total : int
        Total number of steps; ``0`` when unknown.
    message : str
        Human-readable status, e.g. ``"slice 3/10"``.
    preview : numpy.ndarray, optional
        An optional preview image (e.g. StyleGAN training samples).
    """

    step: int
    total: int
    message: str = ""
    preview: np.ndarray | None = None

    @property
    def fraction(self) -> float:
        """Fraction done in ``[0, 1]`` (``0`` when the total is unknown)."""
        return 0.0 if self.total <= 0 else min(1.0, self.step / self.total)


class CancelToken:
    """A thread-safe flag an engine checks between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the running engine to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if :meth:`cancel` was called."""
        if self._event.is_set():
            raise Cancelled("the job was cancelled; nothing was written")


def check_cancelled(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` when ``cancel`` is set (``None`` never cancels)."""
    if cancel is not None:
        cancel.raise_if_cancelled()


def drain(
    generator: Generator[Progress, Any, R],
    *,
    on_progress: Callable[[Progress], None] | None = None,
) -> R:
    """Run an engine generator to completion and return its result.

    Parameters
    ----------
    generator : Generator
        An engine generator yielding :class:`Progress` and returning a result.
    on_progress : callable, optional
        Called with each :class:`Progress` event (e.g. to print a progress bar).

    Returns
    -------
    object
        The generator's return value (usually an ``EngineResult``).
    """
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None and isinstance(event, Progress):
            on_progress(event)


def relay_progress(
    generator: Generator[Any, None, R], transform: Callable[[Progress], Progress]
) -> Generator[Progress, None, R]:
    """Re-yield a nested engine generator's progress, rescaled or relabelled.

    Use as ``result = yield from relay_progress(inner, transform)`` inside an engine
    that runs another engine as one of its stages.

    Parameters
    ----------
    generator : Generator
        The nested engine generator.
    transform : callable
        Maps each of its :class:`Progress` events to the event to yield.

    Returns
    -------
    object
        The nested generator's return value.
    """
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, Progress):
            yield transform(event)
