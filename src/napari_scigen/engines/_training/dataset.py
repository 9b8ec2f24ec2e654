"""Random slices of a windowed volume, the training data of every slice trainer."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core.stack import Window
from ...core.validation import InvalidInputError

#: The axes of a ``(Z, Y, X)`` volume, in array order: a slice "perpendicular to z" is
#: ``volume[k]``.
AXIS_NAMES = ("z", "y", "x")


class SliceDataset:
    """Random (cropped) slices of a windowed volume, as ``[-1, 1]`` float tensors.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(Z, Y, X)`` volume on its own scale.
    window : Window
        Intensity window mapped to ``[-1, 1]``.
    resolution : int
        Output size.
    axes : tuple of str
        Slicing directions (from :data:`AXIS_NAMES`).
    crop : bool
        Random crops (``True``) or whole slices resized to ``resolution``.

    Raises
    ------
    InvalidInputError
        Slices smaller than ``resolution`` with ``crop=True``.
    """

    def __init__(
        self, volume: np.ndarray, window: Window, resolution: int, axes: tuple[str, ...], crop: bool
    ) -> None:
        import torch

        self.volume = torch.from_numpy(window.to_unit(volume) * 2.0 - 1.0)
        self.resolution = resolution
        self.axes = tuple(axes)
        self.crop = crop
        shape = volume.shape
        for axis in self.axes:
            plane = [s for i, s in enumerate(shape) if i != AXIS_NAMES.index(axis)]
            if crop and min(plane) < resolution:
                raise InvalidInputError(
                    f"slices perpendicular to {axis} are {plane[0]}x{plane[1]}, smaller than the "
                    f"generator resolution {resolution}: run again with resolution=N, "
                    f"N <= {min(plane)}, or with crop=False to resize whole slices",
                    options=["resolution", "crop"],
                )

    def sample(self, batch: int, generator) -> Any:
        """Draw ``batch`` slices ``(batch, 1, R, R)`` using ``generator`` (a CPU torch.Generator)."""
        import torch
        import torch.nn.functional as F

        res = self.resolution
        out = []
        depth, height, width = self.volume.shape

        def randint(high: int) -> int:
            return int(torch.randint(0, max(1, high), (1,), generator=generator))

        for _ in range(batch):
            axis = self.axes[randint(len(self.axes))]
            if axis == "z":
                plane = self.volume[randint(depth)]
            elif axis == "y":
                plane = self.volume[:, randint(height), :]
            else:
                plane = self.volume[:, :, randint(width)]
            if self.crop:
                top = randint(plane.shape[0] - res + 1)
                left = randint(plane.shape[1] - res + 1)
                tile = plane[top : top + res, left : left + res]
            else:
                tile = F.interpolate(
                    plane[None, None],
                    size=(res, res),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )[0, 0]
            out.append(tile)
        return torch.stack(out).unsqueeze(1).contiguous()
