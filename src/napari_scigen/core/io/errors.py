"""Turn tifffile's failures and log messages into clear :class:`InvalidInputError` messages."""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import tifffile

from napari_scigen.core.validation import InvalidInputError

#: Exceptions that tifffile and the codecs raise for damaged or foreign files.
_DECODE_ERRORS = (
    ValueError,  # includes tifffile.TiffFileError
    struct.error,
    EOFError,
    IndexError,
    KeyError,
    OverflowError,
    RuntimeError,  # imagecodecs errors
    ZeroDivisionError,  # tifffile on zero strip or tile sizes
    AssertionError,  # tifffile's internal checks on damaged headers
    TypeError,  # tifffile on tags of the wrong type (e.g. a text strip offset)
)


class _TifffileMessages(logging.Filter):
    """Collects (and hides) tifffile log records emitted by the current thread."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.messages.append(record.getMessage())
        return False


@contextlib.contextmanager
def _collect_tifffile_messages() -> Iterator[list[str]]:
    logger = logging.getLogger("tifffile")
    collector = _TifffileMessages()
    logger.addFilter(collector)
    try:
        yield collector.messages
    finally:
        logger.removeFilter(collector)


def _broken_file_error(path: Path, problem: str, *, options=()) -> InvalidInputError:
    return InvalidInputError(f"{path.name}: {problem} (file: {path})", options=options)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, tifffile.TiffFileError) and text.startswith("not a TIFF file"):
        return "not a TIFF file (the header is not 'II*' or 'MM*'); is it another image format?"
    return text
