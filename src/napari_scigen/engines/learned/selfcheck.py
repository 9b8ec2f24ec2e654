"""Self-validation: score methods on kept data held out of training, before filling.

The learned engines hold some kept slices (interpolation) or some known regions
(inpainting) out of training, rebuild them like the real job, and score every candidate
method there with the same metrics and intensity window. The scores are the expected
error of the fill on this volume; they decide whether the learned result is used
(:func:`decide`) and, for ``auto``, which method fills the gaps. NumPy only (the flow
baseline uses scikit-image).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Methods whose scores decide, by metric.
HIGHER_IS_BETTER = {"psnr": True, "ssim": True}


@dataclass
class SelfValidation:
    """Scores of each method on the held-out data.

    Attributes
    ----------
    scores : dict
        ``{method: {"psnr": dB, "ssim": value, "per_slice_psnr": [...]}}``.
    what : str
        What was held out and how it was rebuilt (one sentence).
    count : int
        Held-out slices (or masks).
    extra : dict
        Anything else worth recording (e.g. uncertainty/error correlation).
    """

    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    what: str = ""
    count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def best(self, metric: str = "psnr") -> str:
        """The method with the best ``metric``."""
        return max(self.scores, key=lambda m: self.scores[m][metric])

    def summary(self, metric: str = "psnr") -> str:
        """``"learned 23.1 dB / SSIM 0.921, linear 21.6 dB / SSIM 0.890"``."""
        ordered = sorted(self.scores, key=lambda m: -self.scores[m][metric])
        return ", ".join(
            f"{m} {self.scores[m]['psnr']:.2f} dB / SSIM {self.scores[m]['ssim']:.3f}"
            for m in ordered
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for provenance."""
        return {"what": self.what, "count": self.count, "scores": self.scores, **self.extra}


def score(truth: np.ndarray, candidates: dict[str, np.ndarray], window, mask=None) -> dict:
    """PSNR and SSIM of each candidate against ``truth`` (data units, ``window`` range).

    Parameters
    ----------
    truth : numpy.ndarray
        ``(k, Y, X)`` held-out real data.
    candidates : dict
        ``{method: (k, Y, X) rebuilt}``.
    window : tuple of float
        ``(low, high)`` intensity window of the metrics.
    mask : numpy.ndarray, optional
        Score inside this mask only (inpainting).
    """
    from ...metrics.pixel import psnr, ssim

    results = {}
    region = "all" if mask is None else "inside"
    for method, rebuilt in candidates.items():
        p = psnr(truth, rebuilt, data_range=window, mask=mask, region=region)
        s = ssim(truth, rebuilt, data_range=window, mask=mask, region=region)
        results[method] = {
            "psnr": round(float(p.value), 4),
            "ssim": round(float(s.value), 4),
            "per_slice_psnr": [round(float(v), 3) for v in p.values],
        }
    return results


def decide(
    validation: SelfValidation | None,
    *,
    baseline: str,
    force: bool,
    metric: str = "psnr",
) -> tuple[str, bool, str]:
    """Whether the learned result may be used.

    Returns
    -------
    tuple
        ``(method to use, learned lost, reason)``.
    """
    if validation is None or "learned" not in validation.scores:
        return "learned", False, "no self-validation was possible: the expected error is unknown"
    learned = validation.scores["learned"][metric]
    reference = validation.scores[baseline][metric]
    unit = " dB" if metric == "psnr" else ""
    if learned >= reference:
        return (
            "learned",
            False,
            f"learned beat {baseline} on self-validation ({metric} {learned:.3f}{unit} vs "
            f"{reference:.3f}{unit})",
        )
    verdict = (
        f"LEARNED LOST SELF-VALIDATION: {metric} {learned:.3f}{unit} vs {baseline} "
        f"{reference:.3f}{unit} on {validation.count} held-out {validation.what}"
    )
    if force:
        return "learned", True, verdict + "; the learned result is used anyway (force_learned)"
    return baseline, True, verdict + f"; falling back to {baseline} (force_learned=True keeps it)"


def flow_rebuild(below: np.ndarray, above: np.ndarray, t: float, params=None) -> np.ndarray:
    """The flow engine's rebuild of one slice at fraction ``t`` between two kept ones."""
    from ..interpolation.classical import FlowParams, flow_blend, tvl1_flow

    below = below.astype(np.float64)
    above = above.astype(np.float64)
    flow = tvl1_flow(below, above, params or FlowParams()).astype(np.float64)
    grid = np.indices(below.shape, dtype=np.float64)
    return flow_blend(below, above, flow, t, grid)


def error_correlation(error: np.ndarray, spread: np.ndarray) -> float:
    """Spearman rank correlation of the absolute error and the predicted spread."""
    from scipy.stats import spearmanr

    e, s = np.abs(error).ravel(), np.asarray(spread).ravel()
    if e.size > 200_000:
        pick = np.linspace(0, e.size - 1, 200_000).astype(int)
        e, s = e[pick], s[pick]
    if np.ptp(s) == 0 or np.ptp(e) == 0:
        return float("nan")
    return float(spearmanr(e, s).statistic)
