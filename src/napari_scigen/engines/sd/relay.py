"""Progress and cancellation around a diffusers call.

A diffusers pipeline call blocks until all its denoising steps are done and reports
steps only through callbacks. :func:`relay_call` runs the call in a worker thread and
relays each step to the engine generator (which yields it as
:class:`~napari_scigen.core.progress.Progress`); a step waits until its event was
handed on, so a cancel requested while handling a progress event takes effect at the
very next step. :class:`StepCounter` turns the steps of several calls into one
progress bar.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from ...core.progress import Cancelled, CancelToken, Progress

T = TypeVar("T")


class StepRelay:
    """Passed to code running a diffusers call: reports steps, says when to stop.

    :meth:`step` waits until the consuming generator has handed the event on (its
    ``yield`` returned), so work advances only while the engine generator is being
    iterated, and a cancel requested while handling a progress event takes effect
    at the very next step.
    """

    def __init__(self, cancel: CancelToken | None) -> None:
        self._cancel = cancel
        self._stop = threading.Event()
        self._handed_on = threading.Semaphore(0)
        self.events: queue.Queue = queue.Queue()

    def should_stop(self) -> bool:
        """Whether the run was cancelled or its consumer went away."""
        return self._stop.is_set() or (self._cancel is not None and self._cancel.cancelled)

    def step(self, count: int = 1) -> None:
        """Report ``count`` finished denoising steps and wait until they were handed on."""
        self.events.put(("step", count))
        self._handed_on.acquire()

    def step_or_raise(self, count: int = 1) -> None:
        """Report steps, then raise :class:`Cancelled` if the run should stop (legacy callbacks)."""
        self.step(count)
        if self.should_stop():
            raise Cancelled("the job was cancelled; nothing was written")

    def handed_on(self) -> None:
        """Called by the consumer once a step event was yielded."""
        self._handed_on.release()

    def stop(self) -> None:
        """Ask the running call to stop at its next step (and release a waiting step)."""
        self._stop.set()
        self._handed_on.release()


def relay_call(
    call: Callable[[StepRelay], T], cancel: CancelToken | None
) -> Generator[int, None, T]:
    """Run ``call(relay)`` in a worker thread, yielding step counts as they are reported.

    The generator returns ``call``'s result or re-raises its exception (e.g.
    :class:`Cancelled` raised from a step callback). If the consumer closes the
    generator early, the worker is asked to stop and is joined before returning,
    so no diffusers call keeps running in the background.
    """
    import torch

    relay = StepRelay(cancel)
    outcome: dict[str, Any] = {}
    threads = torch.get_num_threads()

    def work() -> None:
        torch.set_num_threads(threads)  # intra-op thread count is per thread under OpenMP
        try:
            outcome["value"] = call(relay)
        except BaseException as error:  # re-raised in the consumer's thread
            outcome["error"] = error
        finally:
            relay.events.put(("done", 0))

    worker = threading.Thread(target=work, name="napari-scigen-diffusion", daemon=True)
    worker.start()
    try:
        while True:
            kind, count = relay.events.get()
            if kind == "done":
                break
            yield count
            relay.handed_on()
    finally:
        relay.stop()
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class StepCounter:
    """Turns step counts into :class:`Progress` events over a known total."""

    def __init__(self, total: int) -> None:
        self.total = max(int(total), 1)
        self.done = 0

    def advance(self, count: int, message: str) -> Progress:
        """Add ``count`` steps and return the event to yield."""
        self.done = min(self.total, self.done + int(count))
        return Progress(self.done, self.total, message)

    def relay(
        self,
        call: Callable[[StepRelay], T],
        cancel: CancelToken | None,
        message: str,
        steps_in_call: int,
    ) -> Generator[Progress, None, T]:
        """Like :func:`relay_call`, yielding :class:`Progress` such as ``"<message>: step 3/20"``."""
        steps = relay_call(call, cancel)
        local = 0
        try:
            while True:
                try:
                    count = next(steps)
                except StopIteration as stop:
                    return stop.value
                local += count
                yield self.advance(
                    count, f"{message}: step {min(local, steps_in_call)}/{steps_in_call}"
                )
        finally:
            steps.close()
