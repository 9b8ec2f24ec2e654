"""Self-validation of StyleGAN interpolation: hold out kept slices, score, decide.

Before filling, the engine rebuilds some *kept* slices from their kept neighbours exactly
as it rebuilds the missing ones, and scores the rebuilt slices against the real ones,
together with linear interpolation of the same neighbours. Kept slices that can be left
out to make a gap of the job's own length are used when they exist (an **exact** check:
drop-every-G jobs); otherwise single kept slices are left out, which makes a longer gap
(a **proxy**: keep-every-G jobs, where every kept slice bounds a gap). Nothing is
trained, so held-out slices cost only the projection of their neighbours (usually
projected anyway) and one synthesis each.

The GAN's contribution is the *detail* it adds on top of the linear base
(:mod:`.interpolate`), so the check scores the linear base plus the detail at a few
strengths (:data:`STRENGTHS`, scaled by ``1 - pixel_blend``) and the rule
(:func:`decide`) picks the one that fills:

* a strength is **acceptable** when, on the held-out slices, its PSNR is at most
  :data:`PSNR_TOLERANCE_DB` below linear's and its SSIM at most :data:`SSIM_TOLERANCE`
  below;
* among the acceptable strengths, the one with the lowest GMSD (gradient structure, the
  texture a blur loses) fills, **if** that GMSD is lower than linear's by at least
  :data:`GMSD_MARGIN` (relative; a detail that changes nothing measurable is not worth
  its cost and its risk);
* otherwise StyleGAN lost: linear fills, and the result says so;
* a pass at a **proxy** gap only is *not verifiable*: linear fills (on real scans such
  passes gained no texture at the job's gap and lost PSNR and surface), unless forced.

NumPy only (scores come from :mod:`napari_scigen.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..learned.geometry import blank_gap, blank_groups, gap_lengths
from ..learned.selfcheck import Decision, SelfValidation

#: PSNR (dB) StyleGAN may lose to linear on the held-out slices and still fill.
PSNR_TOLERANCE_DB = 1.0
#: SSIM StyleGAN may lose to linear on the held-out slices and still fill.
SSIM_TOLERANCE = 0.02
#: Relative GMSD improvement over linear StyleGAN must show to fill.
GMSD_MARGIN = 0.01
#: Strengths of the GAN detail scored (multiplied by ``1 - pixel_blend``).
STRENGTHS = (1.0, 0.5, 0.25)


@dataclass(frozen=True)
class Check:
    """Kept slices held out between two kept neighbours (source indices).

    Attributes
    ----------
    below, above : int
        The kept neighbours the held-out slices are rebuilt from.
    rows : tuple of (int, float)
        ``(source index, fraction t)`` of each held-out slice.
    gap : int
        Distance between ``below`` and ``above`` on the output grid.
    """

    below: int
    above: int
    rows: tuple[tuple[int, float], ...]
    gap: int


@dataclass
class CheckPlan:
    """What is held out and whether it matches the job's gaps.

    Attributes
    ----------
    checks : list of Check
    exact : bool
        Held-out slices sit in gaps of the job's own length (else a longer, harder gap).
    target_gaps, check_gaps : set of int
        Gap lengths of the job and of the checks (output grid).
    """

    checks: list[Check] = field(default_factory=list)
    exact: bool = False
    target_gaps: set[int] = field(default_factory=set)
    check_gaps: set[int] = field(default_factory=set)

    @property
    def ends(self) -> list[int]:
        """Source indices the checks need projected."""
        return sorted({c.below for c in self.checks} | {c.above for c in self.checks})

    def describe(self) -> str:
        """What was held out, for people."""
        gaps = ", ".join(map(str, sorted(self.target_gaps)))
        if self.exact:
            return f"kept slices rebuilt at the job's own gap ({gaps})"
        longer = ", ".join(map(str, sorted(self.check_gaps)))
        return (
            f"kept slices rebuilt at gap {longer} (no kept slice can be rebuilt at the job's "
            f"gap {gaps}, so a longer, harder gap stands in)"
        )


def plan_checks(plan, count: int, prefer: set[int] | None = None) -> CheckPlan:
    """Choose up to ``count`` runs of kept slices to hold out, spread along z.

    Parameters
    ----------
    plan : SlicePlan
        The job.
    count : int
        Most held-out runs (0: no check).
    prefer : set of int, optional
        Source indices already projected for the job: runs whose neighbours are among
        them cost no extra projection and are taken first.
    """
    source_of = {target: source for source, target in plan.kept}
    known = np.zeros(plan.n_out, dtype=bool)
    known[list(source_of)] = True
    targets = gap_lengths(known)
    result = CheckPlan(target_gaps=targets)
    if count <= 0 or not targets:
        return result
    groups = blank_groups(known, targets)
    exact = bool(groups)
    if not exact:
        counts: dict[int, int] = {}
        for row in np.flatnonzero(known):
            gap = blank_gap(known, int(row))
            if gap:
                counts[gap] = counts.get(gap, 0) + 1
        if not counts:
            return result
        longer = [g for g in counts if g > max(targets)] or list(counts)
        chosen_gap = max(longer, key=lambda g: (counts[g], -g))
        groups = [
            (int(r),) for r in np.flatnonzero(known) if blank_gap(known, int(r)) == chosen_gap
        ]
    index = np.flatnonzero(known)

    def as_check(group: tuple[int, ...]) -> Check:
        position = int(np.searchsorted(index, group[0]))
        i, j = int(index[position - 1]), int(index[position + len(group)])
        rows = tuple((source_of[r], (r - i) / (j - i)) for r in group)
        return Check(source_of[i], source_of[j], rows, j - i)

    checks = [as_check(g) for g in groups]
    if prefer:
        cheap = [c for c in checks if c.below in prefer and c.above in prefer]
        if len(cheap) >= min(count, len(checks)):
            checks = cheap
    if len(checks) > count:  # evenly spread, distinct
        n = len(checks)
        checks = [checks[int((i + 0.5) * n / count)] for i in range(count)]
    result.checks, result.exact = checks, exact
    result.check_gaps = {c.gap for c in checks}
    return result


def score(truth: np.ndarray, candidates: dict[str, np.ndarray], window) -> dict[str, dict]:
    """PSNR, SSIM and GMSD of each candidate against ``truth`` in the window ``(low, high)``."""
    from ...metrics.gradient import gmsd
    from ...metrics.pixel import psnr, ssim

    results = {}
    for name, rebuilt in candidates.items():
        p = psnr(truth, rebuilt, data_range=window)
        results[name] = {
            "psnr": round(float(p.value), 4),
            "ssim": round(float(ssim(truth, rebuilt, data_range=window).value), 4),
            "gmsd": round(float(gmsd(truth, rebuilt, data_range=window).value), 4),
            "per_slice_psnr": [round(float(v), 3) for v in p.values],
        }
    return results


def strength_name(strength: float) -> str:
    """Candidate name of a detail strength (``"stylegan x0.5"``)."""
    return f"stylegan x{strength:g}"


@dataclass(frozen=True)
class StyleGANDecision:
    """The method that fills and the GAN detail strength it uses (0 for linear)."""

    decision: Decision
    strength: float


def decide(
    validation: SelfValidation | None,
    strengths: dict[str, float],
    *,
    exact: bool,
    force: bool,
    full: float,
) -> StyleGANDecision:
    """The rule of the module docstring.

    Parameters
    ----------
    validation : SelfValidation or None
        Scores of ``"linear"`` and of each name in ``strengths`` (None: nothing held out).
    strengths : dict
        ``{candidate name: detail strength}``.
    exact : bool
        Whether the check was at the job's own gap.
    force : bool
        Fill with StyleGAN (at ``full`` strength unless a strength passed) whatever the
        scores say.
    full : float
        The strength the user asked for (``1 - pixel_blend``).
    """
    by = "z exact" if exact else "z proxy"
    if validation is None:
        if force:
            reason = "no kept slice could be held out: the expected error is unknown; StyleGAN "
            return StyleGANDecision(
                Decision("stylegan", False, reason + "is used (forced)", "forced"), full
            )
        return StyleGANDecision(
            Decision(
                "linear",
                False,
                "NOT VERIFIABLE: no kept slice can be held out and rebuilt, so the generator's "
                "error here cannot be measured; filling with linear",
                "not verifiable",
            ),
            0.0,
        )
    s = validation.scores
    lin = s["linear"]

    def text(name: str) -> str:
        v = s[name]
        return f"PSNR {v['psnr']:.2f} dB, SSIM {v['ssim']:.3f}, GMSD {v['gmsd']:.3f}"

    acceptable = [
        name
        for name in strengths
        if s[name]["psnr"] >= lin["psnr"] - PSNR_TOLERANCE_DB
        and s[name]["ssim"] >= lin["ssim"] - SSIM_TOLERANCE
    ]
    where = f"on {validation.count} held-out {validation.what}"
    if acceptable:
        best = min(acceptable, key=lambda n: (s[n]["gmsd"], -strengths[n]))
        if s[best]["gmsd"] < lin["gmsd"] * (1.0 - GMSD_MARGIN):
            reason = (
                f"StyleGAN (detail x{strengths[best]:g}) kept the texture better than linear "
                f"within the tolerances {where}: {text(best)} vs linear {text('linear')}"
            )
            if exact or force:
                return StyleGANDecision(
                    Decision("stylegan", False, reason, by if exact else "forced"),
                    strengths[best],
                )
            # Only a longer gap than the job's could be checked: measured on real scans,
            # such a pass did not carry over to the job's own gap (no texture gained, PSNR
            # and surface lost), so it never decides alone, as in the learned engine.
            return StyleGANDecision(
                Decision(
                    "linear",
                    False,
                    "NOT VERIFIABLE at the job's own gap: StyleGAN passed only a check at a "
                    f"longer gap ({reason[0].lower() + reason[1:]}), which does not show it "
                    "helps here; filling with linear",
                    "not verifiable",
                ),
                0.0,
            )
        why = (
            f"not sharper than linear by {GMSD_MARGIN:.0%} of GMSD "
            f"({s[best]['gmsd']:.4f} vs {lin['gmsd']:.4f})"
        )
    else:
        best = max(strengths, key=lambda n: s[n]["psnr"])
        why = f"more than {PSNR_TOLERANCE_DB:g} dB PSNR or {SSIM_TOLERANCE:g} SSIM below linear"
    verdict = (
        f"STYLEGAN LOST SELF-VALIDATION: {why} {where} (best StyleGAN {text(best)} vs linear "
        f"{text('linear')})"
    )
    if force:
        return StyleGANDecision(
            Decision("stylegan", True, verdict + "; StyleGAN is used anyway (forced)", "forced"),
            full,
        )
    return StyleGANDecision(Decision("linear", True, verdict + "; falling back to linear", by), 0.0)


def validation_from(
    truth: np.ndarray,
    linear: np.ndarray,
    details: np.ndarray,
    strengths: dict[str, float],
    window,
    cast,
    what: str,
) -> SelfValidation:
    """Score linear and linear + each strength of the detail on the held-out slices.

    ``truth`` is in data units (input dtype), ``linear`` and ``details`` float64 data
    units, ``cast`` turns float data into the input dtype and range.
    """
    candidates = {"linear": cast(linear)}
    for name, strength in strengths.items():
        candidates[name] = cast(linear + strength * details)
    scores = score(truth, candidates, window)
    return SelfValidation(scores=scores, what=what, count=int(truth.shape[0]))


def expected_error(validation: SelfValidation | None, name: str) -> dict[str, Any] | None:
    """The held-out scores of the candidate that filled (None without a check)."""
    if validation is None or name not in validation.scores:
        return None
    return validation.scores[name]
