"""Realism of a *set* of generated slices against real ones, without any network weights.

Generated samples (StyleGAN, DCGAN) are unpaired: sample ``i`` is not a rebuild of real
slice ``i``, so per-pair scores say little. What a materials scientist checks is whether
the generated material has the real one's morphology, as distributions over the set:

* **porosity**: mean pore fraction of each set, and the signed relative error;
* **specific surface**: mean pore perimeter per area of each set, and the relative error;
* **two-point correlation**: the pore-phase S2(r) averaged over each set; the distance is
  the RMS difference of the two mean curves (:func:`s2_distance`);
* **pore-size distribution**: the area-weighted distribution of pore equivalent diameters
  pooled over each set; the distance is the 1-Wasserstein (earth mover's) distance in
  pixels (:func:`pore_size_distance`), plus both medians.

Both sets are segmented with **one** threshold (given, usually Otsu's of the real data),
so a contrast change shows up as a morphology change. NumPy/SciPy only; the learned
scores (FID/KID, LPIPS) live in :mod:`.distribution` and :mod:`.perceptual` and need
weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.validation import InvalidInputError


def _stack(pores, name: str) -> np.ndarray:
    array = np.asarray(pores, dtype=bool)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] == 0:
        raise InvalidInputError(f"{name} must be a slice or a stack of slices, got {array.shape}")
    return array


def mean_s2(pores, r_max: int) -> np.ndarray:
    """The pore-phase S2(r), ``r = 0..r_max`` px, averaged over the slices (in-plane)."""
    from .morphology import two_point_correlation

    stack = _stack(pores, "pores")
    return np.mean([two_point_correlation(p, r_max)[1] for p in stack], axis=0)


def s2_distance(real_pores, generated_pores, r_max: int) -> float:
    """RMS difference of the two sets' mean S2 curves (0 = the same pore correlations)."""
    a, b = mean_s2(real_pores, r_max), mean_s2(generated_pores, r_max)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def pore_sizes(pores) -> tuple[np.ndarray, np.ndarray]:
    """Equivalent diameters (px) of the pores of every slice and their area weights."""
    from .morphology import size_distribution

    diameters, areas = [], []
    for slice_ in _stack(pores, "pores"):
        sizes = size_distribution(slice_, method="label")
        if sizes["count"]:
            diameters.append(sizes["diameters"])
            areas.append(np.pi * sizes["diameters"] ** 2 / 4)
    if not diameters:
        return np.zeros(0), np.zeros(0)
    d, w = np.concatenate(diameters), np.concatenate(areas)
    return d, w / w.sum()


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    from .morphology import _weighted_percentile

    return _weighted_percentile(values, weights, 50) if values.size else float("nan")


def pore_size_distance(real_pores, generated_pores) -> dict[str, float]:
    """1-Wasserstein distance (px) of the area-weighted pore diameter distributions.

    Returns
    -------
    dict
        ``distance`` (``nan`` when a set has no pore), ``real_d50`` and ``generated_d50``
        (area-weighted median diameters, px).
    """
    from scipy.stats import wasserstein_distance

    d_real, w_real = pore_sizes(real_pores)
    d_gen, w_gen = pore_sizes(generated_pores)
    distance = (
        float(wasserstein_distance(d_real, d_gen, w_real, w_gen))
        if d_real.size and d_gen.size
        else float("nan")
    )
    return {
        "distance": distance,
        "real_d50": _weighted_median(d_real, w_real),
        "generated_d50": _weighted_median(d_gen, w_gen),
    }


def realism(real, generated, threshold: float, *, r_max: int | None = None) -> dict[str, Any]:
    """Porosity, specific surface, S2 and pore sizes of two sets of slices, side by side.

    Parameters
    ----------
    real, generated : numpy.ndarray
        ``(N, Y, X)`` and ``(M, Y', X')`` grey-value slices (or single slices); the sets
        may differ in size and slice shape.
    threshold : float
        Grey value separating pores (``<= threshold``) from solid, shared by both sets.
    r_max : int, optional
        Largest S2 lag (default: a quarter of the smaller side, at most 32 px).

    Returns
    -------
    dict
        ``porosity`` and ``specific_surface``: ``{"real", "generated", "relative_error"}``
        (set means); ``s2``: ``{"distance", "r_max"}``; ``pore_size``: ``{"distance",
        "real_d50", "generated_d50"}``; ``threshold``; ``counts``.
    """
    from .morphology import relative_error, specific_surface_area

    real_pores = _stack(np.asarray(real) <= threshold, "real")
    gen_pores = _stack(np.asarray(generated) <= threshold, "generated")
    side = min(*real_pores.shape[1:], *gen_pores.shape[1:])
    r_max = max(1, min(32, side // 4)) if r_max is None else int(r_max)
    porosity = (float(real_pores.mean()), float(gen_pores.mean()))
    surface = tuple(
        float(np.mean([specific_surface_area(p) for p in stack]))
        for stack in (real_pores, gen_pores)
    )
    return {
        "threshold": float(threshold),
        "counts": {"real": int(real_pores.shape[0]), "generated": int(gen_pores.shape[0])},
        "porosity": {
            "real": porosity[0],
            "generated": porosity[1],
            "relative_error": relative_error(*porosity),
        },
        "specific_surface": {
            "real": surface[0],
            "generated": surface[1],
            "relative_error": relative_error(*surface),
        },
        "s2": {"distance": s2_distance(real_pores, gen_pores, r_max), "r_max": r_max},
        "pore_size": pore_size_distance(real_pores, gen_pores),
    }
