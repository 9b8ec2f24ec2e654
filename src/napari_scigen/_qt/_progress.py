"""A job's progress for people: percent, time left, and napari's activity dock.

:class:`JobProgress` turns the engine's :class:`~napari_scigen.core.progress.Progress`
events into what a user reads: the dock's bar moves with the overall fraction (in
tenths of a percent, so a job of 12 000 steps does not sit at 0 %) and says
"3.4 % · about 12 min left"; the same job shows in napari's activity dock
(*View ▸ Activity*, bottom right) through :class:`napari.utils.progress`, whose
Cancel button cancels the job.

One time-left figure, everywhere (the dock's bar, its status line, the activity dock's
ETA label): where the engine states the time left of its current phase (training with a
time limit knows it; "ETA 2 min", "about 40 s left"), that figure, named after the phase
and taken out of the message; otherwise the job's time left at the pace of the current
phase (a phase is the message's leading words, e.g. "learned: training"). Within a phase
the figure never goes up. Until the first event the bar counts the seconds of start-up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from napari.utils import cancelable_progress
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QProgressBar

from ..core.progress import Progress

#: Resolution of the dock's bar (steps of 0.1 %).
BAR_STEPS = 1000


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


#: An engine's own time-left phrase: "ETA 2 min", "ETA 1 h 05 min", "about 40 s left".
_STATED = re.compile(
    r",?\s*(?:ETA|about)\s+(\d+(?:\.\d+)?)\s*(h|min|s)\b(?:\s+(\d+)\s*min)?(?:\s+left)?"
)
_UNIT_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0}
#: Longest activity-dock description (it shares one ~520-px row with the bar, the time
#: left and Cancel; what the engine does is in the dock's status line).
ACTIVITY_CHARS = 30


def stated_time_left(message: str) -> tuple[str, float | None]:
    """The message without the engine's time-left phrase, and that time in seconds.

    Examples
    --------
    >>> stated_time_left("learned: training step 5/100, loss 0.0123, ETA 2 min")
    ('learned: training step 5/100, loss 0.0123', 120.0)
    >>> stated_time_left("slice 3/10")
    ('slice 3/10', None)
    """
    match = _STATED.search(message)
    if match is None:
        return message, None
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]] + 60.0 * float(match[3] or 0)
    return (message[: match.start()] + message[match.end() :]).strip(), seconds


def phase_of(message: str) -> str:
    """A message's phase: its words before the first number, bracket or comma.

    Examples
    --------
    >>> phase_of("learned: training 12/120 s (step 50/1000), loss 0.01")
    'learned: training'
    >>> phase_of("flow: slice 5 (1/2)")
    'flow: slice'
    """
    return re.split(r"[\d(,;]", message, maxsplit=1)[0].strip(" :-–—·")


class _ActivityProgress(cancelable_progress):
    """napari's progress object whose Cancel button (activity dock) cancels the job, and
    whose ETA label shows the dock's time left (not tqdm's own guess)."""

    def __init__(self, *args, on_cancel: Callable[[], None], **kwargs):
        self._on_cancel = on_cancel
        self.eta_text = ""
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> None:
        if not self.gui and not self.is_init:
            super().display(msg, pos)
            return
        self.events.eta(value=self.eta_text)

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
    on_tick : callable, optional
        Called each second before the first event with ``"Starting… 12 s"``.
    """

    def __init__(
        self,
        bar: QProgressBar,
        title: str,
        on_cancel: Callable[[], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        on_tick: Callable[[str], None] | None = None,
    ):
        self.bar = bar
        self.title = title
        self.clock = clock
        self.started = clock()
        self.fraction = 0.0
        self.remaining: float | None = None
        #: The current phase, and whether :attr:`remaining` is the engine's figure for it.
        self.phase = ""
        self.phase_stated = False
        self.message = ""
        self._phase_since = (self.started, 0.0)
        self.closed = False
        bar.setRange(0, 0)  # busy until the first event
        bar.setFormat("starting…")
        short = title if len(title) <= ACTIVITY_CHARS else title[: ACTIVITY_CHARS - 1] + "…"
        self.activity: _ActivityProgress | None = _ActivityProgress(
            total=0, desc=short, on_cancel=on_cancel
        )
        self._on_tick = on_tick
        self._ticker = QTimer()
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._tick)
        self._ticker.start()

    def _tick(self) -> None:
        if self.closed:
            self._ticker.stop()
            return
        text = f"Starting… {self.clock() - self.started:.0f} s"
        self.bar.setFormat(text)
        if self._on_tick is not None:
            self._on_tick(text)

    @property
    def text(self) -> str:
        """The bar's text: percent and the one time-left figure."""
        shown = format_progress(self.fraction, self.remaining)
        if self.phase_stated and self.phase:
            percent, left = shown.split(" · ", 1)
            return f"{percent} · {self.phase.split(': ')[-1]}: {left}"
        return shown

    def measure(self, event: Progress) -> None:
        """Take the fraction done and the time left from one event (no drawing).

        The engine's own time-left phrase leaves the message (:attr:`message`) and becomes
        the figure; otherwise the job's rest is estimated at the current phase's pace.
        Within a phase the figure never rises.
        """
        self._ticker.stop()
        now = self.clock()
        message, stated = stated_time_left(event.message)
        self.message = message
        phase = phase_of(message)
        new_phase = phase != self.phase
        if new_phase:
            self.phase, self._phase_since = phase, (now, self.fraction)
        if event.total <= 0:
            return
        self.fraction = event.fraction
        if stated is not None:
            estimate = stated
        else:
            since, done_then = self._phase_since
            pace_done = self.fraction - done_then
            if pace_done > 0 and now > since:
                estimate = (1.0 - self.fraction) * (now - since) / pace_done
            else:
                estimate = remaining_seconds(now - self.started, self.fraction)
        if self.fraction >= 1.0:
            estimate = None
        previous = (
            None if new_phase or (stated is not None) != self.phase_stated else self.remaining
        )
        if estimate is not None and previous is not None:
            estimate = min(estimate, previous)
        self.phase_stated = stated is not None
        self.remaining = estimate
        if self.activity is not None:  # the bar's figure, without the percent
            self.activity.eta_text = self.text.split(" · ", 1)[-1] if estimate is not None else ""

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

    def update(self, event: Progress) -> None:
        """:meth:`measure` and :meth:`show` one engine event."""
        self.measure(event)
        self.show(event)

    def close(self, done: bool) -> None:
        """End the display: a full (done) or empty bar; the activity entry goes away."""
        self.closed = True
        self._ticker.stop()
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if done else 0)
        self.bar.setFormat("%p %")
        if self.activity is not None:
            activity, self.activity = self.activity, None
            activity.close()
