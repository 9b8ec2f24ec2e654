"""Preview grids of generated slices, shown while a generator trains."""

from __future__ import annotations

import math

import numpy as np


def preview_grid(images, columns: int | None = None) -> np.ndarray:
    """Tile ``(N, 1, H, W)`` images in ``[-1, 1]`` into one ``[0, 1]`` float32 grid.

    Parameters
    ----------
    images : torch.Tensor
        Generated images (any device, any float dtype).
    columns : int, optional
        Grid width in images (default: about the square root of ``N``).

    Returns
    -------
    numpy.ndarray
        ``(rows * H, columns * W)`` float32 in ``[0, 1]``; empty cells are mid-grey (0.5).
    """
    array = images.detach().float().cpu().numpy()[:, 0]
    count, height, width = array.shape
    columns = columns or max(1, int(math.ceil(math.sqrt(count))))
    rows = int(math.ceil(count / columns))
    grid = np.zeros((rows * height, columns * width), np.float32)
    for i, image in enumerate(array):
        r, c = divmod(i, columns)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = image
    return np.clip((grid + 1.0) / 2.0, 0.0, 1.0)
