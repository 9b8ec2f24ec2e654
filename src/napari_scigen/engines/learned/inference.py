"""Apply the interpolation network to the xz and yz planes of a volume and fuse them.

Every xz plane (fixed y) and yz plane (fixed x) of the output grid is a 2D image whose
known rows are the kept slices. Its unknown rows are filled linearly, the network adds
its residual, and the predictions of both plane families and of ``tta`` flips of each
plane (along z and along the in-plane axis) are averaged. Their standard deviation at
each voxel is the uncertainty estimate: it is large where planes and flips disagree,
i.e. where the synthesis is unreliable (a lower bound of the error, not a calibrated
error bar).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from ...core.progress import CancelToken, Progress, check_cancelled
from .geometry import linear_fill
from .training import autocast

#: Flips of a plane used for test-time augmentation, in order: (along z, in-plane).
FLIPS = ((False, False), (True, False), (False, True), (True, True))
#: Pixels per inference batch (CPU, GPU).
BATCH_PIXELS = {"cpu": 1_500_000, "gpu": 16_000_000}


@dataclass
class Prediction:
    """The fused prediction of the rows a job synthesizes.

    Attributes
    ----------
    rows : numpy.ndarray
        Output-grid rows predicted, ascending.
    mean : numpy.ndarray
        ``(len(rows), Y, X)`` float32 in network units.
    spread : numpy.ndarray
        ``(len(rows), Y, X)`` float32 standard deviation over planes and flips.
    count : int
        Predictions averaged per voxel.
    """

    rows: np.ndarray
    mean: np.ndarray
    spread: np.ndarray
    count: int

    def take(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, spread)`` of some of :attr:`rows`."""
        index = np.searchsorted(self.rows, np.asarray(rows, dtype=int))
        return self.mean[index], self.spread[index]


def _planes(volume: np.ndarray, orientation: str, index: slice) -> np.ndarray:
    """``(n, Z, C)`` planes: xz planes ``volume[:, y, :]`` or yz planes ``volume[:, :, x]``."""
    if orientation == "xz":
        return np.ascontiguousarray(volume[:, index, :].transpose(1, 0, 2))
    return np.ascontiguousarray(volume[:, :, index].transpose(2, 0, 1))


def predict_rows(
    network,
    volume: np.ndarray,
    known: np.ndarray,
    rows: np.ndarray,
    *,
    orientations: tuple[str, ...],
    tta: int,
    device: str,
    progress: Callable[[float, str], Progress],
    label: str,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, Prediction]:
    """Predict the output ``rows`` of ``volume`` from its ``known`` rows.

    Parameters
    ----------
    network : ResidualUNet
        Trained network (eval mode) on ``device``.
    volume : numpy.ndarray
        Output grid ``(n_out, Y, X)`` in network units; unknown rows are ignored.
    known : numpy.ndarray
        Rows the network may see.
    rows : numpy.ndarray
        Rows to predict (unknown, with known rows on both sides).
    orientations : tuple of str
        ``("xz", "yz")`` or one of them.
    tta : int
        Flips per plane (1, 2 or 4; see :data:`FLIPS`).
    device : str
        Resolved torch device.
    progress : callable
        ``progress(fraction, message)`` on the job's scale.
    label : str
        Engine name for messages.
    cancel : CancelToken, optional
        Checked between batches.
    """
    import torch

    rows = np.asarray(sorted(int(r) for r in rows), dtype=int)
    filled = linear_fill(volume, known)
    mask = np.broadcast_to(np.asarray(known, np.float32)[:, None], (volume.shape[0], 1))
    total = np.zeros((rows.size, *volume.shape[1:]), np.float64)
    squares = np.zeros_like(total)
    gpu = device.startswith("cuda")
    budget = BATCH_PIXELS["gpu" if gpu else "cpu"]
    jobs = []
    for orientation in orientations:
        count = volume.shape[1] if orientation == "xz" else volume.shape[2]
        width = volume.shape[2] if orientation == "xz" else volume.shape[1]
        per_batch = max(1, budget // (volume.shape[0] * width))
        jobs += [
            (orientation, slice(i, min(count, i + per_batch))) for i in range(0, count, per_batch)
        ]
    flips = FLIPS[:tta]
    n_predictions = len(orientations) * len(flips)
    for done, (orientation, index) in enumerate(jobs, start=1):
        check_cancelled(cancel)
        planes = _planes(filled, orientation, index)
        inputs = np.stack(
            [planes, np.broadcast_to(mask, planes.shape[1:])[None].repeat(planes.shape[0], 0)],
            axis=1,
        )
        batch = torch.from_numpy(inputs).to(device)
        if gpu:
            batch = batch.contiguous(memory_format=torch.channels_last)
        result = np.zeros((planes.shape[0], rows.size, planes.shape[2]), np.float64)
        result_sq = np.zeros_like(result)
        with torch.no_grad():
            for flip_z, flip_in_plane in flips:
                dims = [d for d, on in ((2, flip_z), (3, flip_in_plane)) if on]
                x = batch.flip(dims) if dims else batch
                with autocast(device):
                    residual = network(x).float()
                if dims:
                    residual = residual.flip(dims)
                values = (batch[:, :1] + residual)[:, 0, rows].cpu().numpy().astype(np.float64)
                result += values
                result_sq += values * values
        if orientation == "xz":
            total[:, index, :] += result.transpose(1, 0, 2)
            squares[:, index, :] += result_sq.transpose(1, 0, 2)
        else:
            total[:, :, index] += result.transpose(1, 2, 0)
            squares[:, :, index] += result_sq.transpose(1, 2, 0)
        yield progress(
            done / len(jobs),
            f"{label}: filling {orientation} planes, batch {done}/{len(jobs)} "
            f"({n_predictions} predictions per voxel)",
        )
    mean = total / n_predictions
    variance = np.maximum(squares / n_predictions - mean * mean, 0.0)
    return Prediction(
        rows, mean.astype(np.float32), np.sqrt(variance).astype(np.float32), n_predictions
    )
