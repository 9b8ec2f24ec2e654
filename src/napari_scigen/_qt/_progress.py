"""A job's progress for people: percent, time left, and napari's activity dock.

:class:`JobProgress` turns the engine's :class:`~napari_scigen.core.progress.Progress`
events into what a user reads: the dock's bar moves with the overall fraction (in
tenths of a percent, so a job of 12 000 steps does not sit at 0 %) and says
"3.4 % · about 12 min left"; the same job shows in napari's activity dock
(*View ▸ Activity*, bottom right) through :class:`napari.utils.progress`, whose
Cancel button cancels the job. The time left is estimated from the events alone:
elapsed time / fraction done.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from napari.utils import cancelable_progress
from qtpy.QtWidgets import QProgressBar

from ..core.progress import Progress

#: Resolution of the dock's bar (steps of 0.1 %).
BAR_STEPS = 1000
#: Shortest interval between two description updates of napari's activity bar (its
#: label processes Qt events on every change).
DESCRIPTION_INTERVAL_S = 0.25


def remaining_seconds(elapsed: float, fraction: float) -> float | None:
    """Estimated seconds left after ``elapsed`` seconds for ``fraction`` of the job.

    Assumes the rest goes at the average pace so far: ``elapsed * (1 - f) / f``.
    ``None`` when nothing is done yet (no pace to extrapolate) or the job is done.

    Examples
    --------
    >>> remaining_seconds(30.0, 0.25)
    90.0
    >>> remaining_seconds(5.0, 0.0) is None
    True
    """
    if not 0.0 < fraction < 1.0 or elapsed <= 0:
        return None
    return elapsed * (1.0 - fraction) / fraction


def format_remaining(seconds: float | None) -> str:
    """``"about 3 min left"`` (rounded for reading, not for precision).

    Examples
    --------
    >>> format_remaining(42)
    'about 40 s left'
    >>> format_remaining(3 * 3600 + 20 * 60)
    'about 3 h 20 min left'
    >>> format_remaining(None)
    'estimating time left…'
    """
    if seconds is None:
        return "estimating time left…"
    if seconds < 10:
        return "a few seconds left"
    if seconds < 60:
        return f"about {int(round(seconds / 10.0)) * 10} s left"
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return f"about {minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min left" if minutes else f"about {hours} h left"


def format_progress(fraction: float, remaining: float | None) -> str:
    """The bar's text: ``"3.4 % · about 12 min left"`` (``"0.03 %"`` early in a long job).

    Examples
    --------
    >>> format_progress(0.0003, 3960)
    '0.03 % · about 1 h 6 min left'
    """
    percent = 100.0 * fraction
    digits = 2 if percent < 1 else 1 if percent < 10 else 0
    shown = f"{percent:.{digits}f} %"
    return f"{shown} · {format_remaining(remaining)}"


class _ActivityProgress(cancelable_progress):
    """napari's progress object whose Cancel button (activity dock) cancels the job."""

    def __init__(self, *args, on_cancel: Callable[[], None], **kwargs):
        self._on_cancel = on_cancel
        super().__init__(*args, **kwargs)

    def cancel(self) -> None:
        super().cancel()
        self._on_cancel()


class JobProgress:
    """The progress display of one job: the dock's bar and napari's activity dock.

    Parameters
    ----------
    bar : QProgressBar
        The dock's bar.
    title : str
        What runs, for the activity dock (e.g. ``"Slice interpolation (flow)"``).
    on_cancel : callable
        Called when the job is cancelled from the activity dock.
    clock : callable
        Seconds, monotonic (tests pass a fake clock).
    """

    def __init__(
        self,
        bar: QProgressBar,
        title: str,
        on_cancel: Callable[[], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.bar = bar
        self.title = title
        self.clock = clock
        self.started = clock()
        self.fraction = 0.0
        self.remaining: float | None = None
        self._described_at = -1e9
        self._description = ""
        self.closed = False
        bar.setRange(0, 0)  # busy until the first event
        bar.setFormat("starting…")
        self.activity: _ActivityProgress | None = _ActivityProgress(
            total=0, desc=title, on_cancel=on_cancel
        )

    @property
    def text(self) -> str:
        """The bar's text (percent and time left)."""
        return format_progress(self.fraction, self.remaining)

    def measure(self, event: Progress) -> None:
        """Take the fraction done and the time left from one event (no drawing)."""
        if event.total > 0:
            self.fraction = event.fraction
            self.remaining = remaining_seconds(self.clock() - self.started, self.fraction)

    def show(self, event: Progress) -> None:
        """Draw the measured progress: the dock's bar, then napari's activity dock.

        The activity dock's bar processes Qt events while it redraws, so the job may
        finish (and :meth:`close` run) in the middle: nothing is touched after that.
        """
        if self.closed:
            return
        if event.total <= 0:  # unknown length: busy bar, message only
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, BAR_STEPS)
            self.bar.setValue(int(round(self.fraction * BAR_STEPS)))
            self.bar.setFormat(self.text)
            if self.activity is not None and self.activity.total != event.total:
                self.activity.total = event.total
            step = min(int(event.step), int(event.total))
            if self.activity is not None and step != self.activity.n:
                self.activity.update(step - self.activity.n)
        self._describe(event.message)

    def update(self, event: Progress) -> None:
        """:meth:`measure` and :meth:`show` one engine event."""
        self.measure(event)
        self.show(event)

    def _describe(self, message: str) -> None:
        if self.activity is None or not message or message == self._description:
            return
        now = self.clock()
        if now - self._described_at < DESCRIPTION_INTERVAL_S:
            return
        self._described_at, self._description = now, message
        self.activity.set_description(f"{self.title}: {message}")

    def close(self, done: bool) -> None:
        """End the display: a full (done) or empty bar; the activity entry goes away."""
        self.closed = True
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if done else 0)
        self.bar.setFormat("%p %")
        if self.activity is not None:
            activity, self.activity = self.activity, None
            activity.close()
