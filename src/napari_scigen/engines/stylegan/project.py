"""GAN inversion: find the StyleGAN latents (and noise maps) that reproduce given slices.

Follows the projector described in Karras et al. (2020), "Analyzing and Improving
the Image Quality of StyleGAN", section 5 / appendix D:

* start from the average latent ``w_avg``; optimise ``w`` (one per image, or one
  per layer with ``w_plus=True``, the "W+" space) and every noise map with Adam;
* add Gaussian noise to the latent whose scale ``sigma_w * 0.05 * max(0, 1 - t/0.75)^2``
  ramps down over the first 75 % of the run (``sigma_w`` estimated by sampling the
  mapping network), so the search explores before it settles;
* learning rate ramped up over the first 5 % and down with a cosine over the last 25 %;
* regularise the noise maps so they stay noise and do not absorb the image: at
  every scale of a 2x pyramid (down to 8x8) penalise the squared autocorrelation
  at one-pixel shifts in x and y, and renormalise each map to zero mean and unit
  variance after every step.

The paper measures the image distance with LPIPS. The LPIPS backbones need a
download that is impossible offline, so the default distance here is an offline
substitute, :class:`MultiScaleStructureLoss` (SSIM and gradient differences at
three scales); pass ``lpips_net`` (an ``lpips.LPIPS`` instance whose weights you
have) or any ``perceptual(x, y) -> (N,)`` callable to use another (the
interpolation engine's ``perceptual`` parameter chooses between the default and
LPIPS with local weights). The result says which one was used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from collections.abc import Generator as PyGenerator
from dataclasses import dataclass, field

import numpy as np

from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.validation import InvalidInputError
from .params import PROJECTION_STEPS

#: Name recorded when the default offline perceptual distance is used.
DEFAULT_PERCEPTUAL_NAME = "multiscale-ssim-gradient (offline LPIPS substitute)"


@dataclass
class ProjectionResult:
    """What :func:`run_project` returns.

    Attributes
    ----------
    ws : torch.Tensor
        Latents ``(N, num_ws, w_dim)`` on the CPU (W projections are broadcast).
    noise : list of torch.Tensor
        Optimised noise maps, one ``(N, 1, H, W)`` tensor per synthesis layer.
    reconstructions : numpy.ndarray
        ``G.synthesis(ws, noise)`` as float32 ``(N, R, R)`` in the model range ``[-1, 1]``.
    loss_history : numpy.ndarray
        Image loss (pixel + perceptual, without noise regularisation) per step
        and slice, ``(steps, N)``.
    initial_loss, final_loss : numpy.ndarray
        Image loss per slice at ``w_avg`` (before optimising) and at the end.
    perceptual : str
        Which perceptual distance was used.
    """

    ws: object
    noise: list
    reconstructions: np.ndarray
    loss_history: np.ndarray
    initial_loss: np.ndarray
    final_loss: np.ndarray
    perceptual: str
    settings: dict = field(default_factory=dict)


def _ssim_map(x, y, window: int, data_range: float):
    import torch.nn.functional as F

    pad = window // 2

    def blur(t):
        return F.avg_pool2d(F.pad(t, [pad] * 4, mode="reflect"), window, stride=1)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    )


class MultiScaleStructureLoss:
    """Offline stand-in for LPIPS: structural and gradient differences at several scales.

    For each scale (full, 1/2, 1/4) the distance adds ``mean(1 - SSIM)`` (7x7
    uniform window, data range 2 for ``[-1, 1]`` images) and the mean absolute
    difference of the horizontal and vertical finite differences. It rewards
    matching texture and edges rather than only mean intensity, which is what
    LPIPS is used for in GAN inversion.

    Parameters
    ----------
    scales : int
        Number of 2x scales.
    window : int
        SSIM window size (odd).
    """

    name = DEFAULT_PERCEPTUAL_NAME

    def __init__(self, scales: int = 3, window: int = 7) -> None:
        self.scales = scales
        self.window = window

    def __call__(self, x, y):
        """Per-image distance ``(N,)`` between batches ``(N, 1, H, W)`` in ``[-1, 1]``."""
        import torch.nn.functional as F

        total = 0.0
        for scale in range(self.scales):
            if scale:
                if min(x.shape[-2:]) < 2 * self.window:
                    break
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            window = min(self.window, min(x.shape[-2:]) // 2 * 2 - 1)
            ssim = _ssim_map(x, y, max(window, 1), 2.0)
            gx = (x[..., :, 1:] - x[..., :, :-1]) - (y[..., :, 1:] - y[..., :, :-1])
            gy = (x[..., 1:, :] - x[..., :-1, :]) - (y[..., 1:, :] - y[..., :-1, :])
            total = (
                total
                + (1 - ssim).mean(dim=(1, 2, 3))
                + gx.abs().mean(dim=(1, 2, 3))
                + gy.abs().mean(dim=(1, 2, 3))
            )
        return total


class _LpipsAdapter:
    """Wrap an ``lpips.LPIPS`` module for single-channel ``[-1, 1]`` images."""

    def __init__(self, net) -> None:
        self.net = net
        self.name = f"lpips ({getattr(net, 'pnet_type', type(net).__name__)})"

    def __call__(self, x, y):
        return self.net(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)).reshape(x.shape[0])


def noise_regularization(noise_maps: Sequence) -> object:
    """Per-image multi-scale autocorrelation penalty of noise maps (StyleGAN2 projector).

    Parameters
    ----------
    noise_maps : sequence of torch.Tensor
        ``(N, 1, H, W)`` maps.

    Returns
    -------
    torch.Tensor
        ``(N,)`` sum over maps and pyramid levels (down to 8x8) of the squared
        mean products of each map with itself shifted one pixel in x and in y.
    """
    import torch.nn.functional as F

    total = 0.0
    for noise in noise_maps:
        level = noise
        while True:
            shifted_x = level.roll(shifts=1, dims=3)
            shifted_y = level.roll(shifts=1, dims=2)
            total = total + (level * shifted_x).mean(dim=(1, 2, 3)).square()
            total = total + (level * shifted_y).mean(dim=(1, 2, 3)).square()
            if level.shape[2] <= 8:
                break
            level = F.avg_pool2d(level, 2)
    return total


def _learning_rate(t: float, peak: float, rampdown: float, rampup: float) -> float:
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp = ramp * min(1.0, t / rampup)
    return peak * ramp


def w_statistics(generator, *, samples: int = 10_000, seed: int = 123) -> tuple[object, float]:
    """Mean ``w`` and ``sigma_w = sqrt(E||w - mean||^2)`` estimated by sampling the mapping network.

    ``generator.w_avg`` is used as the mean when it has been trained (non-zero).
    """
    import torch

    device = generator.w_avg.device
    z = torch.randn(
        samples, generator.config.z_dim, generator=torch.Generator().manual_seed(seed)
    ).to(device)
    with torch.no_grad():
        w = generator.mapping(z)[:, 0]
    mean = (
        generator.w_avg.detach().clone() if bool(generator.w_avg.abs().sum() > 0) else w.mean(dim=0)
    )
    sigma = float(((w - mean).square().sum(dim=1).mean()).sqrt())
    return mean, sigma


def _as_batch(slices, resolution: int):
    import torch

    tensor = torch.as_tensor(np.asarray(slices, dtype=np.float32))
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim == 3:
        tensor = tensor[:, None]
    if (
        tensor.ndim != 4
        or tensor.shape[1] != 1
        or tuple(tensor.shape[-2:]) != (resolution, resolution)
    ):
        raise InvalidInputError(
            f"slices must be (N, {resolution}, {resolution}) in the generator's [-1, 1] range, "
            f"got shape {tuple(np.shape(slices))}; tile larger slices first (run_interpolate_stylegan does)"
        )
    if not torch.isfinite(tensor).all():
        raise InvalidInputError("slices contain NaN/infinite values")
    return tensor


def run_project(
    generator,
    slices,
    *,
    steps: int = PROJECTION_STEPS,
    w_plus: bool = True,
    lr: float = 0.1,
    noise_reg_weight: float = 1e5,
    pixel_weight: float = 1.0,
    lpips_weight: float = 1.0,
    perceptual: Callable | None = None,
    lpips_net=None,
    optimize_noise: bool = True,
    initial_noise_factor: float = 0.05,
    noise_ramp_length: float = 0.75,
    lr_rampdown_length: float = 0.25,
    lr_rampup_length: float = 0.05,
    batch_size: int = 8,
    seeds: Sequence[int] | None = None,
    seed: int = 0,
    cancel: CancelToken | None = None,
) -> PyGenerator[Progress, None, ProjectionResult]:
    """Project slices into the generator's latent space (GAN inversion).

    Parameters
    ----------
    generator : Generator
        A StyleGAN generator (its device is used).
    slices : array-like
        ``(N, R, R)`` or ``(R, R)`` float images already mapped to ``[-1, 1]``
        (``R`` = generator resolution).
    steps : int
        Optimisation steps per batch (the default is the interpolation engine's,
        :data:`.params.PROJECTION_STEPS`).
    w_plus : bool
        Optimise one latent per layer (W+, more faithful) instead of one ``w``.
    lr : float
        Peak Adam learning rate.
    noise_reg_weight : float
        Weight of the noise autocorrelation penalty (1e5 in the paper).
    pixel_weight : float
        Weight of the mean squared error.
    lpips_weight : float
        Weight of the perceptual distance.
    perceptual : callable, optional
        ``perceptual(x, y) -> (N,)`` distance; overrides ``lpips_net``.
    lpips_net : torch.nn.Module, optional
        An ``lpips.LPIPS`` instance (weights must be available locally).
    optimize_noise : bool
        Also optimise the noise maps (else they stay at their initial random draw).
    initial_noise_factor, noise_ramp_length, lr_rampdown_length, lr_rampup_length : float
        Schedules of the paper's projector.
    batch_size : int
        Slices optimised together (results do not depend on the batching, up to
        floating-point differences: every slice has its own parameters and seed).
    seeds : sequence of int, optional
        Per-slice seeds of the initial noise maps (default ``seed + index``).
    seed : int
        Base seed.
    cancel : CancelToken, optional
        Checked every step.

    Yields
    ------
    Progress
        One event per optimisation step.

    Returns
    -------
    ProjectionResult
    """

    if steps < 1:
        raise InvalidInputError(f"steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
    targets = _as_batch(slices, generator.config.resolution)
    count = targets.shape[0]
    seeds = list(seeds) if seeds is not None else [seed + i for i in range(count)]
    if len(seeds) != count:
        raise InvalidInputError(f"got {len(seeds)} seeds for {count} slices")

    if perceptual is not None:
        distance = perceptual
        perceptual_name = getattr(
            perceptual, "name", getattr(perceptual, "__name__", type(perceptual).__name__)
        )
    elif lpips_net is not None:
        distance = _LpipsAdapter(lpips_net)
        perceptual_name = distance.name
    else:
        distance = MultiScaleStructureLoss()
        perceptual_name = distance.name

    # Gradients flow to the latents and noise only; the caller's flags are restored after.
    flags = [(p, p.requires_grad) for p in generator.parameters()]
    generator.requires_grad_(False)
    try:
        result = yield from _project(
            generator,
            targets,
            seeds,
            distance,
            perceptual_name,
            steps=steps,
            w_plus=w_plus,
            lr=lr,
            noise_reg_weight=noise_reg_weight,
            pixel_weight=pixel_weight,
            lpips_weight=lpips_weight,
            optimize_noise=optimize_noise,
            initial_noise_factor=initial_noise_factor,
            noise_ramp_length=noise_ramp_length,
            lr_rampdown_length=lr_rampdown_length,
            lr_rampup_length=lr_rampup_length,
            batch_size=batch_size,
            cancel=cancel,
        )
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
    return result


def _project(
    generator,
    targets,
    seeds,
    distance,
    perceptual_name: str,
    *,
    steps: int,
    w_plus: bool,
    lr: float,
    noise_reg_weight: float,
    pixel_weight: float,
    lpips_weight: float,
    optimize_noise: bool,
    initial_noise_factor: float,
    noise_ramp_length: float,
    lr_rampdown_length: float,
    lr_rampup_length: float,
    batch_size: int,
    cancel: CancelToken | None,
) -> PyGenerator[Progress, None, ProjectionResult]:
    import torch

    config = generator.config
    device = generator.w_avg.device
    count = targets.shape[0]
    w_mean, w_sigma = w_statistics(generator)
    synthesis = generator.synthesis
    num_layers = config.num_ws if w_plus else 1

    all_ws, all_noise, recon, history, initial, final = [], [], [], [], [], []
    batches = [range(i, min(i + batch_size, count)) for i in range(0, count, batch_size)]
    total = len(batches) * steps
    done = 0

    def image_loss(images, target):
        loss = pixel_weight * (images - target).square().mean(dim=(1, 2, 3))
        if lpips_weight:
            loss = loss + lpips_weight * distance(images, target)
        return loss

    for indices in batches:
        check_cancelled(cancel)
        target = targets[list(indices)].to(device)
        n = target.shape[0]
        # Initial noise maps: an independent, reproducible draw per slice and layer.
        noise = [
            torch.cat(
                [
                    torch.randn(
                        1,
                        1,
                        h,
                        w,
                        generator=torch.Generator().manual_seed(int(seeds[i]) * 1009 + layer),
                    )
                    for i in indices
                ]
            ).to(device)
            for layer, (h, w) in enumerate(synthesis.noise_shapes)
        ]
        w_opt = w_mean.reshape(1, 1, -1).repeat(n, num_layers, 1).clone().requires_grad_(True)
        for maps in noise:
            maps.requires_grad_(optimize_noise)
        params = [w_opt] + (noise if optimize_noise else [])
        optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
        latent_gens = [torch.Generator().manual_seed(int(seeds[i]) * 1009 + 7919) for i in indices]

        def expand(ws):
            return ws if w_plus else ws.expand(-1, config.num_ws, -1)

        with torch.no_grad():
            initial.append(image_loss(synthesis(expand(w_opt), noise=noise), target).cpu())
        batch_history = []
        for step in range(steps):
            check_cancelled(cancel)
            t = step / steps
            noise_scale = (
                w_sigma * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
            )
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(t, lr, lr_rampdown_length, lr_rampup_length)
            jitter = torch.stack([torch.randn(w_opt.shape[1:], generator=g) for g in latent_gens])
            jitter = jitter.to(device) * noise_scale
            images = synthesis(expand(w_opt + jitter), noise=noise)
            per_image = image_loss(images, target)
            loss = per_image.sum()
            if optimize_noise and noise_reg_weight:
                loss = loss + noise_reg_weight * noise_regularization(noise).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if optimize_noise:
                with torch.no_grad():
                    for maps in noise:
                        maps -= maps.mean(dim=(1, 2, 3), keepdim=True)
                        maps *= maps.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            batch_history.append(per_image.detach().cpu())
            done += 1
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(
                    f"projection loss became {float(loss)} at step {step + 1}; lower lr"
                )
            yield Progress(
                done,
                total,
                f"tiles {indices[0] + 1}-{indices[-1] + 1} of {count}, step {step + 1}/{steps}",
            )

        with torch.no_grad():
            ws = expand(w_opt.detach())
            noise_final = [maps.detach() for maps in noise]
            images = synthesis(ws, noise=noise_final)
            final.append(image_loss(images, target).cpu())
        all_ws.append(ws.cpu())
        all_noise.append([maps.cpu() for maps in noise_final])
        recon.append(images[:, 0].cpu())
        history.append(torch.stack(batch_history))

    ws = torch.cat(all_ws)
    noise_maps = [
        torch.cat([batch[layer] for batch in all_noise])
        for layer in range(len(synthesis.noise_shapes))
    ]
    return ProjectionResult(
        ws=ws,
        noise=noise_maps,
        reconstructions=torch.cat(recon).numpy().astype(np.float32),
        loss_history=torch.cat(history, dim=1).numpy(),
        initial_loss=torch.cat(initial).numpy(),
        final_loss=torch.cat(final).numpy(),
        perceptual=perceptual_name,
        settings={
            "steps": steps,
            "w_plus": w_plus,
            "lr": lr,
            "noise_reg_weight": noise_reg_weight,
            "pixel_weight": pixel_weight,
            "lpips_weight": lpips_weight,
            "optimize_noise": optimize_noise,
            "initial_noise_factor": initial_noise_factor,
            "sigma_w": w_sigma,
        },
    )
