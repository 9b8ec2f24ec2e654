"""The exact-gap check of a z-upsampling: kept xy slices rebuilt at the job's own gaps.

At keep-every-G (or ``--factor G``) no kept z-slice can be rebuilt at gap ``G``: blanking
one gives gap ``2G``. Every kept xy slice can, though: drop its rows (and, separately,
its columns) with the job's own known/unknown row pattern, rebuild them with the
network exactly as the job rebuilds the xz and yz planes (same linear base, same flips),
and score against the real rows. For isotropic voxels (after resampling the rows to the
output z spacing) this is the job's gap exactly: the in-plane self-supervision of SMORE
and ECLARE (Zhao et al. 2021, Remedios et al. 2025). Slices used for this check are held
out of every in-plane training crop, so the score is measured on rows never trained on.

Where the structure is anisotropic (fibres along z) rows across an xy slice are a weaker
stand-in for z; :func:`~.selfcheck.decide_z` therefore combines this score with the
z-proxy and says which one decided.
"""

from __future__ import annotations

import numpy as np

from .geometry import bounded, linear_fill
from .sampling import in_plane_images
from .selfcheck import SelfValidation, score

#: Largest side of the square each held-out in-plane image is cropped to.
MAX_SIDE = 256
#: Kept xy slices held out for the in-plane check, at most.
MAX_SLICES = 4


def row_pattern(known: np.ndarray, length: int) -> np.ndarray:
    """The job's known/unknown pattern along z, repeated to ``length`` rows.

    The pattern runs from the first to the last known output row, so every gap in it is a
    gap of the job (two known rows meet at each repeat, which makes no gap).
    """
    index = np.flatnonzero(np.asarray(known, dtype=bool))
    core = np.asarray(known[index[0] : index[-1] + 1], dtype=bool)
    return np.resize(core, int(length))


def held_out_slices(rows: np.ndarray, count: int) -> tuple[int, ...]:
    """``count`` kept output rows spread evenly (never the first or last kept row)."""
    rows = np.asarray(rows, dtype=int)
    count = min(int(count), MAX_SLICES, max(0, rows.size // 4))
    if count <= 0:
        return ()
    positions = np.linspace(0, rows.size - 1, count + 2)[1:-1].round().astype(int)
    return tuple(sorted({int(rows[p]) for p in positions}))


def check_images(volume, slices, known, zoom_y, zoom_x, thickness=None):
    """The held-out images, their row patterns and target rows, cropped to squares.

    Returns
    -------
    tuple of numpy.ndarray
        ``(images, known_rows, targets)``: ``(k, S, S)`` float32 in network units (rows
        along y, then rows along x, per slice), ``(S,)`` bool known rows and ``(S,)``
        bool rows that are scored (unknown, with known rows on both sides).
    """
    images = [im for s in slices for im in in_plane_images(volume[s], zoom_y, zoom_x, thickness)]
    side = min(MAX_SIDE, *(min(im.shape) for im in images))
    cropped = []
    for image in images:
        top = (image.shape[0] - side) // 2
        left = (image.shape[1] - side) // 2
        cropped.append(image[top : top + side, left : left + side])
    pattern = row_pattern(known, side)
    return np.stack(cropped).astype(np.float32), pattern, bounded(pattern)


def predict_images(network, images, known_rows, *, tta: int, device: str) -> np.ndarray:
    """The network's rebuild of ``images`` from their known rows (flips averaged)."""
    import torch

    from .inference import FLIPS
    from .training import autocast

    base = np.stack([linear_fill(im, known_rows) for im in images])
    mask = np.broadcast_to(known_rows[:, None].astype(np.float32), base.shape[1:])
    inputs = np.stack([base, np.broadcast_to(mask, base.shape)], axis=1)
    batch = torch.from_numpy(np.ascontiguousarray(inputs)).to(device)
    total = torch.zeros(batch.shape[0], *batch.shape[2:], dtype=torch.float32, device=device)
    flips = FLIPS[:tta]
    with torch.inference_mode():
        for flip_rows, flip_columns in flips:
            dims = [d for d, on in ((2, flip_rows), (3, flip_columns)) if on]
            x = batch.flip(dims) if dims else batch
            with autocast(device):
                residual = network(x).float()
            if dims:
                residual = residual.flip(dims)
            total += (batch[:, :1] + residual)[:, 0]
    return (total / len(flips)).cpu().numpy()


def in_plane_check(network, volume, slices, known, *, zoom_y, zoom_x, thickness, tta, device):
    """Score learned vs linear on the held-out kept xy slices at the job's exact gaps.

    Parameters
    ----------
    network : ResidualUNet
        The trained network (eval mode) on ``device``.
    volume : numpy.ndarray
        Output grid in network units.
    slices : sequence of int
        Held-out kept output rows (never in-plane training sources).
    known : numpy.ndarray
        The job's known output rows (its pattern is applied to the in-plane rows).
    zoom_y, zoom_x, thickness
        As for the in-plane training sources.
    tta : int
        Flips, as the job uses them.
    device : str
        Resolved torch device.

    Returns
    -------
    SelfValidation or None
        Scores in network units (window 0..1), or ``None`` without held-out slices or
        scorable rows.
    """
    if not slices:
        return None
    images, known_rows, targets = check_images(volume, slices, known, zoom_y, zoom_x, thickness)
    if not targets.any():
        return None
    learned = predict_images(network, images, known_rows, tta=tta, device=device)
    linear = np.stack([linear_fill(im, known_rows) for im in images])
    mask = np.broadcast_to(targets[None, :, None], images.shape)
    scores = score(
        images.astype(np.float64),
        {"learned": learned.astype(np.float64), "linear": linear.astype(np.float64)},
        (0.0, 1.0),
        mask=mask,
    )
    gaps = sorted({int(g) for g in np.diff(np.flatnonzero(known_rows)) if g > 1})
    validation = SelfValidation(
        scores=scores,
        what=(
            f"in-plane rows of kept xy slices (rows and columns), rebuilt at the job's gap "
            f"{', '.join(map(str, gaps))}"
        ),
        count=len(slices),
    )
    validation.extra["held_out_output_indices"] = list(map(int, slices))
    validation.extra["image_side"] = int(images.shape[-1])
    return validation
