"""Run a classical engine's job in a child Python process, so the GUI never waits on the GIL.

The classical CPU engines (``linear``, ``nearest``, ``flow`` interpolation, ``biharmonic``
inpainting) spend seconds inside numpy/scipy calls that hold the GIL (scipy's ``spsolve``
for instance): on a napari worker thread they freeze the event loop for that long. Here
the same :mod:`napari_scigen.api` job generator runs in a fresh ``python -m`` child; its
progress events and its result (or error) come back over a pipe and are re-yielded by
:func:`job_in_subprocess`, which only waits on a queue (the GIL stays free). Cancel kills
the child at once: these engines write nothing and hold no state. The Compare dock runs a
comparison of classical engines only the same way, as a whole (:func:`compare_job`).

The engine API is unchanged (scripts drain the same generators in-process). A ``python
-m`` child rather than :mod:`multiprocessing` spawn: a user script that starts napari
without ``if __name__ == "__main__"`` is never re-executed in the child. Parent and child
exchange pickles over their private pipes only (never files).
"""

from __future__ import annotations

import importlib
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Generator
from typing import IO, Any

from ..core.progress import Cancelled, CancelToken, Progress

#: ``(task, method)`` of the engines whose jobs run in a child process from the docks.
OFFLOADED: frozenset[tuple[str, str]] = frozenset(
    {
        ("interpolate", "linear"),
        ("interpolate", "nearest"),
        ("interpolate", "flow"),
        ("inpaint", "biharmonic"),
    }
)
#: The api functions a child may run (``"module:function"``).
_TARGETS = {
    "interpolate": "napari_scigen.api:interpolate_job",
    "inpaint": "napari_scigen.api:inpaint_job",
}
_HEADER = struct.Struct("<Q")
#: Seconds between two looks at the cancel token while waiting for the child.
_POLL_S = 0.05


def offloaded(task: str, method: str) -> bool:
    """Whether the docks run ``method`` of ``task`` in a child process."""
    return (task, method) in OFFLOADED


def engine_job(
    task: str, method: str, cancel: CancelToken | None, *args: Any, **kwargs: Any
) -> Generator[Progress, Any, Any]:
    """The dock's job for ``method``: in a child process for :data:`OFFLOADED` engines.

    ``args`` and ``kwargs`` are those of ``api.<task>_job`` without ``method`` and
    ``cancel``. With
    ``NAPARI_SCIGEN_NOTHREADS`` set (jobs on the GUI thread, for deterministic tests) every
    engine runs in-process.
    """
    from ._runner import threads_disabled

    target = _TARGETS[task]
    if offloaded(task, method) and not threads_disabled():
        return job_in_subprocess(target, {"method": method, **kwargs}, cancel, args=args)
    return _load(target)(*args, method=method, cancel=cancel, **kwargs)


#: The compare workflow, run whole in a child when every engine it compares is offloaded.
COMPARE_TARGET = "napari_scigen.workflows.compare:run_compare"


def compare_job(
    cancel: CancelToken | None, volume: Any, *, engines: Any, **kwargs: Any
) -> Generator[Progress, Any, Any]:
    """The Compare dock's job: the whole comparison in a child process when every engine
    in ``engines`` is an :data:`OFFLOADED` one, else in-process (on the worker thread).

    :func:`~napari_scigen.workflows.compare.run_compare` runs its engines itself, one by
    one, so a run is offloaded only as a whole: its scores then run in the child too.
    Runs with a learned, Stable Diffusion or GAN engine stay in-process (they keep their
    loaded weights and release the GIL in torch). The child's work folder is a temporary
    folder of this process, removed after the child ended (killed on Cancel included).
    ``kwargs`` are those of ``run_compare`` but ``work_dir`` and ``cancel``; with
    ``NAPARI_SCIGEN_NOTHREADS`` set everything runs in-process.
    """
    from ..workflows.compare import resolve_engines
    from ._runner import threads_disabled

    keys = resolve_engines(engines)
    if threads_disabled() or not all(offloaded(*key.split("/")) for key in keys):
        return _load(COMPARE_TARGET)(volume, engines=keys, cancel=cancel, **kwargs)
    return _compare_in_subprocess(cancel, volume, {"engines": keys, **kwargs})


def _compare_in_subprocess(
    cancel: CancelToken | None, volume: Any, kwargs: dict[str, Any]
) -> Generator[Progress, Any, Any]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="scigen-compare-") as work_dir:
        job = job_in_subprocess(
            COMPARE_TARGET, {**kwargs, "work_dir": work_dir}, cancel, args=(volume,)
        )
        return (yield from job)


def _load(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    if not module.startswith("napari_scigen."):
        raise ValueError(f"refusing to run {target!r} in a child process")
    return getattr(importlib.import_module(module), name)


def _write_frame(channel: IO[bytes], kind: str, value: Any) -> None:
    data = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
    channel.write(_HEADER.pack(len(data)))
    channel.write(data)
    channel.flush()


def _read_frame(channel: IO[bytes]) -> tuple[str, Any] | None:
    header = channel.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = channel.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)  # noqa: S301 - our own child's pipe, never a file


def job_in_subprocess(
    target: str,
    kwargs: dict[str, Any],
    cancel: CancelToken | None = None,
    *,
    args: tuple = (),
) -> Generator[Progress, Any, Any]:
    """Run ``target(*args, **kwargs)`` (an api job generator) in a child process.

    Yields the child's :class:`Progress` events and returns its result; the child's
    exception is re-raised here (``RuntimeError`` with its text when it cannot be
    pickled). Cancelled (``cancel`` set, or ``Cancelled`` thrown in at a yield) or closed,
    the child is killed.

    Raises
    ------
    Cancelled
        When ``cancel`` is set while waiting.
    RuntimeError
        When the child ends without a result (killed, out of memory).
    """
    _load(target)  # refuse foreign targets before starting anything
    payload = pickle.dumps((target, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    child = subprocess.Popen(
        [sys.executable, "-m", __name__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    frames: queue.Queue = queue.Queue()

    def send() -> None:
        try:
            child.stdin.write(payload)
            child.stdin.close()
        except OSError:  # the child died (or was killed on Cancel): the reader says so
            pass

    def receive() -> None:
        try:
            while (frame := _read_frame(child.stdout)) is not None:
                frames.put(frame)
        except (OSError, EOFError, pickle.UnpicklingError):
            pass
        frames.put(("eof", None))

    threading.Thread(target=send, name="scigen-offload-send", daemon=True).start()
    threading.Thread(target=receive, name="scigen-offload-receive", daemon=True).start()
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("the job was cancelled; nothing was written")
            try:
                kind, value = frames.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if kind == "progress":
                yield value
            elif kind == "result":
                return value
            elif kind == "error":
                raise value
            else:
                code = child.wait()
                raise RuntimeError(
                    f"the engine's worker process ended without a result (exit code {code}); "
                    "was it out of memory?"
                )
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives a pickle round trip, else a ``RuntimeError`` with its text."""
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    except Exception:  # noqa: BLE001 - any failure: send the text
        return RuntimeError(str(error) or type(error).__name__)
    return error


def _child_main() -> int:
    """The child: read ``(target, args, kwargs)`` from stdin, stream frames to stdout."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints cannot break the frames
    sys.stdout = sys.stderr
    target, args, kwargs = pickle.load(sys.stdin.buffer)  # noqa: S301 - from our parent's pipe
    try:
        generator = _load(target)(*args, **kwargs)
        while True:
            try:
                event = next(generator)
            except StopIteration as stop:
                _write_frame(channel, "result", stop.value)
                return 0
            _write_frame(channel, "progress", event)
    except Exception as error:  # noqa: BLE001 - re-raised in the parent
        _write_frame(channel, "error", _portable(error))
        return 0


if __name__ == "__main__":
    sys.exit(_child_main())
