"""How the axes of a tifffile series become ``[C,] [Z,] Y, X``.

Singleton axes are dropped; a channel axis (ImageJ ``C`` or RGB samples ``S``)
longer than 1 becomes the first axis. An ImageJ ``C`` axis longer than
:data:`MAX_CHANNELS_WITHOUT_SLICES` with no Z axis is read as slices: that is
what ``tifffile.imwrite(..., imagej=True)`` makes of a 3D array written
without ``axes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import _broken_file_error

#: An ImageJ C axis longer than this, with no Z axis, is read as slices.
MAX_CHANNELS_WITHOUT_SLICES = 4
_CHANNEL_AXES = "CS"


@dataclass
class _AxisPlan:
    """How to turn a tifffile series into ``[C,] [Z,] Y, X``."""

    squeeze: tuple[int, ...]  # axes of the series to drop (singletons)
    order: tuple[int, ...]  # transpose order applied after squeezing
    axes: str  # resulting axes, e.g. "ZYX" or "CZYX"
    notes: list[str]


def _plan_axes(shape: tuple[int, ...], axes: str, path: Path) -> _AxisPlan:
    if len(axes) == len(shape) >= 2 and len(set(axes)) != len(axes):
        axes = "Q" * (len(shape) - 2) + "YX"  # tifffile names tiny shaped arrays oddly ("XYX")
    if len(axes) != len(shape) or "Y" not in axes or "X" not in axes:
        raise _broken_file_error(path, f"cannot interpret TIFF axes {axes!r} of shape {shape}")
    notes: list[str] = []
    squeeze = tuple(
        i for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if n == 1 and a not in "YX"
    )
    kept = [(a, n) for i, (a, n) in enumerate(zip(axes, shape, strict=True)) if i not in squeeze]
    channel = [i for i, (a, _) in enumerate(kept) if a in _CHANNEL_AXES]
    stack = [i for i, (a, _) in enumerate(kept) if a not in _CHANNEL_AXES + "YX"]
    if len(channel) == 1 and not stack and kept[channel[0]][0] == "C":
        size = kept[channel[0]][1]
        if size > MAX_CHANNELS_WITHOUT_SLICES:
            notes.append(
                f"ImageJ channel axis of {size} with no Z axis read as {size} slices "
                "(tifffile writes a 3D array without 'axes' this way)"
            )
            stack, channel = channel, []
    if len(channel) > 1:
        described = ", ".join(f"{kept[i][0]}={kept[i][1]}" for i in channel)
        raise _broken_file_error(
            path, f"has more than one channel axis ({described}); save one channel set per file"
        )
    if len(stack) > 1:
        described = ", ".join(f"{kept[i][0]}={kept[i][1]}" for i in stack)
        raise _broken_file_error(
            path,
            f"has several stack axes ({described}); napari-scigen reads one volume per file: "
            "save a single time point / position (e.g. Fiji: Image > Duplicate)",
        )
    y_index = next(i for i, (a, _) in enumerate(kept) if a == "Y")
    x_index = next(i for i, (a, _) in enumerate(kept) if a == "X")
    order = tuple(channel + stack + [y_index, x_index])
    result_axes = ("C" if channel else "") + ("Z" if stack else "") + "YX"
    return _AxisPlan(squeeze, order, result_axes, notes)


def _apply_plan(array: Any, plan: _AxisPlan) -> Any:
    if plan.squeeze:
        index = tuple(0 if i in plan.squeeze else slice(None) for i in range(array.ndim))
        array = array[index]
    if plan.order != tuple(range(len(plan.order))):
        array = array.transpose(plan.order)
    return array
