"""Interpolation between latents and noise maps."""

from __future__ import annotations


def lerp(a, b, t: float):
    """Linear interpolation ``(1 - t) a + t b``."""
    return a + (b - a) * t


def slerp(a, b, t: float, *, centre=None, eps: float = 1e-7):
    """Spherical interpolation along the last axis, around ``centre`` (default origin).

    Vectors are interpolated on the great circle between their directions from
    ``centre`` and their lengths linearly; nearly parallel vectors fall back to
    :func:`lerp`. Centre W latents on ``w_avg``; Gaussian ``z`` on the origin.
    """
    import torch

    if centre is not None:
        a, b = a - centre, b - centre
    norm_a = a.norm(dim=-1, keepdim=True)
    norm_b = b.norm(dim=-1, keepdim=True)
    unit_a = a / norm_a.clamp_min(eps)
    unit_b = b / norm_b.clamp_min(eps)
    cos = (unit_a * unit_b).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    small = sin.abs() < 1e-4
    safe_sin = torch.where(small, torch.ones_like(sin), sin)
    direction = (torch.sin((1 - t) * omega) * unit_a + torch.sin(t * omega) * unit_b) / safe_sin
    direction = torch.where(small, lerp(unit_a, unit_b, t), direction)
    out = direction * lerp(norm_a, norm_b, t)
    return out + centre if centre is not None else out


def mix_noise(a, b, t: float):
    """Blend two unit-variance noise maps and keep unit variance.

    ``((1 - t) a + t b) / sqrt((1 - t)^2 + t^2)``: a plain linear blend of two
    independent noise fields has lower variance in the middle (looks smoothed).
    """
    return lerp(a, b, t) / ((1 - t) ** 2 + t**2) ** 0.5
