"""Run an engine generator off the GUI thread, with progress and Cancel.

The same generator the headless API drains runs here inside a napari
``thread_worker``. The worker never touches Qt: it only yields
:class:`~napari_scigen.core.progress.Progress` events, which napari delivers to
the GUI thread through signals. Set ``NAPARI_SCIGEN_NOTHREADS=1`` to run jobs
synchronously on the GUI thread (deterministic tests, or a fallback when thread
workers misbehave).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ..core.progress import Cancelled, CancelToken, Progress, drain
from ._llvm_guard import avoid_triton_llvm_clash

#: Environment variable that makes jobs run synchronously.
NOTHREADS_ENV = "NAPARI_SCIGEN_NOTHREADS"
#: Seconds after Cancel by which the dock says "Cancelled" even if the engine is still in
#: a step that cannot be interrupted (a model load, a long training step): the job is
#: then let go; it stops at its next step, and whatever it returns is thrown away.
CANCEL_GRACE_S = 1.0

JobFactory = Callable[[CancelToken], Generator[Progress, Any, Any]]


def threads_disabled() -> bool:
    """Whether ``NAPARI_SCIGEN_NOTHREADS`` asks for synchronous jobs."""
    return os.environ.get(NOTHREADS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class _Outcome:
    """What the worker's generator ended with: its return value or its exception."""

    value: Any = None
    error: BaseException | None = None


@dataclass
class Job:
    """A running (or finished) job: its cancel token and, when threaded, the worker."""

    token: CancelToken
    worker: Any = None
    finished: bool = False
    outcome: str = "running"  # "running" | "done" | "cancelled" | "error"
    error: BaseException | None = None
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    #: Whether the job was let go after Cancel while its engine was still busy.
    detached: bool = False
    #: Whether the worker thread has ended (``True`` at once for synchronous jobs).
    thread_done: bool = False
    grace: float | None = CANCEL_GRACE_S
    _abandon: Callable[[], None] | None = None

    def cancel(self) -> None:
        """Ask the engine to stop at its next check or its next progress event.

        The worker is not quit: :func:`cancel_at_yields` throws
        :class:`~napari_scigen.core.progress.Cancelled` into the engine at its next
        yield, so the engine's own clean-up runs (StyleGAN training writes a checkpoint).
        If it has not stopped within :data:`CANCEL_GRACE_S` (a model load, one long
        step), the job ends as cancelled there and then; the engine's late result or
        error is discarded.
        """
        self.token.cancel()
        if self._abandon is not None and not self.finished:
            from qtpy.QtCore import QTimer

            QTimer.singleShot(int(1000 * (self.grace or 0.0)), self._abandon)


def cancel_at_yields(
    generator: Generator[Progress, Any, Any], token: CancelToken
) -> Generator[Progress, Any, Any]:
    """Run ``generator``; once ``token`` is set, throw ``Cancelled`` into it at its next yield.

    So Cancel takes effect at the engine's next progress event even where it does not
    check the token, and the engine's ``except Cancelled`` clean-up runs on the worker
    thread. Closing this generator closes ``generator`` too.
    """
    try:
        event = next(generator)
        while True:
            yield event
            if token.cancelled:
                event = generator.throw(Cancelled("the job was cancelled; nothing was written"))
            else:
                event = next(generator)
    except StopIteration as stop:
        return stop.value
    finally:
        generator.close()


def start_job(
    factory: JobFactory,
    *,
    on_progress: Callable[[Progress], None],
    on_result: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
    on_cancelled: Callable[[], None],
    on_finished: Callable[[Job], None] | None = None,
    grace: float | None = CANCEL_GRACE_S,
) -> Job:
    """Start ``factory(token)`` as a job; every callback runs on the GUI thread.

    Parameters
    ----------
    factory : callable
        Takes a :class:`CancelToken`, returns the engine generator. It is called
        on the worker thread, so it must not touch Qt objects either: build it
        from parameters snapshotted on the GUI thread.
    on_progress, on_result, on_error, on_cancelled : callable
        Called with each progress event, the result, an exception other than
        cancellation, or when the job was cancelled.
    on_finished : callable, optional
        Called last, whatever the outcome.
    grace : float, optional
        Seconds after Cancel by which a busy job is let go (ends as cancelled, its late
        result discarded); ``None``: wait for the engine (e.g. a cluster that must shut
        down before another run may start).
    """
    avoid_triton_llvm_clash()  # before any worker code can import torch.optim -> triton
    job = Job(token=CancelToken())
    engine_factory = factory

    def factory(token: CancelToken):  # noqa: F811 - the engine's job, cancellable at yields
        return cancel_at_yields(engine_factory(token), token)

    def finish(outcome: str, error: BaseException | None = None) -> None:
        job.finished, job.outcome, job.error = True, outcome, error
        if on_finished is not None:
            on_finished(job)

    if threads_disabled():
        job.thread_done = True
        try:
            result = drain(factory(job.token), on_progress=on_progress)
        except Cancelled:
            on_cancelled()
            finish("cancelled")
            return job
        except Exception as error:  # noqa: BLE001 - reported to the user
            on_error(error)
            finish("error", error)
            return job
        on_result(result)
        finish("done")
        return job

    from napari.qt.threading import create_worker

    def work():
        # Every exception becomes a returned value: superqt's generator worker swallows a
        # RuntimeError (it takes it for a deleted Qt object), never emits ``errored`` or
        # ``returned``, and the widget would wait forever. Re-raised on the GUI thread below.
        try:
            return _Outcome(value=(yield from factory(job.token)))
        except BaseException as error:  # noqa: BLE001 - handed to the GUI thread
            return _Outcome(error=error)

    worker = create_worker(work, _start_thread=False, _progress=False, _ignore_errors=True)
    job.worker = worker
    state: dict[str, Any] = {"outcome": None, "error": None}

    def returned(outcome):
        state["outcome"] = outcome

    def errored(error):
        state["error"] = error

    def abandon():
        if job.finished:
            return
        job.detached = True
        on_cancelled()
        finish("cancelled")

    job._abandon = abandon if grace is not None else None
    job.grace = grace

    def finished():
        job.thread_done = True
        if job.finished:  # let go after Cancel: its late result or error is discarded
            return
        outcome = state["outcome"]
        error = state["error"] if outcome is None else outcome.error
        if isinstance(error, GeneratorExit):
            error = None  # the worker was quit (Cancel)
        if error is not None and not isinstance(error, Cancelled) and not job.token.cancelled:
            on_error(error)
            finish("error", error)
        elif error is not None or job.token.cancelled or outcome is None:
            on_cancelled()
            finish("cancelled")
        else:
            on_result(outcome.value)
            finish("done")

    worker.yielded.connect(
        lambda event: isinstance(event, Progress) and not job.finished and on_progress(event)
    )
    worker.returned.connect(returned)
    worker.errored.connect(errored)
    worker.finished.connect(finished)
    worker.start()
    return job
