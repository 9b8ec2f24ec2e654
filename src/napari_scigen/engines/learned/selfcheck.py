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
        return "learned", True, verdict + "; the learned result is used anyway (forced)"
    return baseline, True, verdict + f"; falling back to {baseline}"


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


#: PSNR (dB) by which learned must beat linear on the in-plane exact-gap check when no
#: exact z-check exists (a margin against the in-plane rows' weaker stand-in for z).
IN_PLANE_MARGIN_DB = 0.1


@dataclass(frozen=True)
class Decision:
    """Which method fills, and why.

    Attributes
    ----------
    chosen : str
        ``"learned"`` or the baseline.
    lost : bool
        Whether a check found the learned result worse than the baseline.
    reason : str
        One or two sentences for people (no option names).
    decided_by : str
        ``"z exact"``, ``"in-plane exact + z proxy"``, ``"in-plane exact"``, ``"forced"``,
        ``"not verifiable"`` or ``"none"``.
    """

    chosen: str
    lost: bool
    reason: str
    decided_by: str


def _delta(validation: SelfValidation | None, baseline: str, metric: str) -> float | None:
    if validation is None or "learned" not in validation.scores:
        return None
    return validation.scores["learned"][metric] - validation.scores[baseline][metric]


def decide_z(
    z_check: SelfValidation | None,
    z_exact: bool,
    in_plane: SelfValidation | None,
    *,
    baseline: str = "linear",
    force: bool = False,
    metric: str = "psnr",
) -> Decision:
    """The decision rule of the learned slice interpolation (documented in docs/validation.md).

    1. An **exact z-check** (runs of kept slices held out and rebuilt at the job's own gap)
       decides alone: learned fills when it scores at least as well as the baseline there.
    2. Otherwise the **in-plane exact-gap check** decides, vetoed by the **z-proxy**
       (kept slices held out and rebuilt at a longer gap) where there is one: learned fills
       only when it beats the baseline in-plane by more than :data:`IN_PLANE_MARGIN_DB`
       (PSNR; any margin for SSIM) *and* is not worse than the baseline on the z-proxy.
    3. With neither check the network's result cannot be verified: the baseline fills.

    ``force`` keeps the learned result whatever the checks say (the reason says so).
    Reasons are written for people: they name no option of any front-end.
    """
    unit = " dB" if metric == "psnr" else ""
    margin = IN_PLANE_MARGIN_DB if metric == "psnr" else 0.0

    def fmt(validation: SelfValidation) -> str:
        s = validation.scores
        return (
            f"{metric} learned {s['learned'][metric]:.3f}{unit} vs {baseline} "
            f"{s[baseline][metric]:.3f}{unit}"
        )

    def lost_to(text: str, by: str) -> Decision:
        verdict = f"LEARNED LOST SELF-VALIDATION: {text}"
        if force:
            return Decision(
                "learned", True, verdict + "; the learned result is used anyway (forced)", "forced"
            )
        return Decision(baseline, True, verdict + f"; falling back to {baseline}", by)

    z_delta = _delta(z_check, baseline, metric)
    ip_delta = _delta(in_plane, baseline, metric)
    z_text = ""
    if z_check is not None and z_delta is not None:
        where = "at the same gap" if z_exact else "at a longer gap (proxy)"
        z_text = f"{fmt(z_check)} on {z_check.count} kept slice(s) held out along z {where}"
    ip_text = ""
    if in_plane is not None and ip_delta is not None:
        ip_text = f"{fmt(in_plane)} on rows of {in_plane.count} held-out kept slice(s) at the job's own gap"
    if z_exact and z_delta is not None:
        if z_delta >= 0:
            return Decision("learned", False, f"learned beat {baseline}: {z_text}", "z exact")
        return lost_to(z_text, "z exact")
    if ip_delta is not None:
        by = "in-plane exact + z proxy" if z_delta is not None else "in-plane exact"
        both = ip_text + (f"; {z_text}" if z_text else "")
        if ip_delta > margin and (z_delta is None or z_delta >= 0):
            return Decision("learned", False, f"learned beat {baseline}: {both}", by)
        if ip_delta > margin:
            return lost_to(f"learned won in-plane but lost along z: {both}", by)
        if ip_delta >= 0:
            return lost_to(
                f"learned did not beat {baseline} by more than {margin:g}{unit}: {both}", by
            )
        return lost_to(both, by)
    if force:
        text = f"only a proxy check exists ({z_text})" if z_text else "no check was possible"
        return Decision(
            "learned",
            bool(z_delta is not None and z_delta < 0),
            f"{text}: the expected error at this gap is unknown; the learned result is used (forced)",
            "forced",
        )
    return Decision(
        baseline,
        False,
        "NOT VERIFIABLE: no kept slice or kept row can be rebuilt at this gap, so the "
        f"network's error here cannot be measured; filling with {baseline}",
        "not verifiable",
    )
