"""Train a StyleGAN2 generator on the slices of one microCT volume.

Recipe (Karras et al. 2020 and 2020b "Training GANs with limited data"):
non-saturating logistic loss, lazy R1 regularisation on real images every
``r1_interval`` steps, exponential moving average of the generator weights
(``G_ema``, with a ramp-up), style mixing, Adam with ``beta1 = 0``. For small
datasets real slices get random flips/90-degree rotations and both real and
generated images get differentiable augmentation
(:mod:`napari_scigen.engines._training.augment`) before the discriminator. Path-length regularisation is not used (it mainly helps
inversion smoothness at large scale and costs an extra backward pass).

The slice dataset, checkpoints, resume, the step loop (cancel, divergence) and the
result type are the shared training infrastructure (:mod:`napari_scigen.engines._training`);
this module holds the StyleGAN step.

Mixed precision (``precision``): the generator and discriminator forward passes run
under :func:`torch.autocast` in bfloat16 or float16 (float16 on CUDA only, with a
:class:`torch.amp.GradScaler` per network); weights, optimizer states, checkpoints
and the R1 penalty (its real-image pass runs with autocast off) stay float32.
``channels_last`` puts the networks and images in channels-last memory layout.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Generator as PyGenerator
from pathlib import Path
from typing import Any

import numpy as np

from ...core.params import ParameterError
from ...core.progress import CancelToken, Progress
from ...core.provenance import make_provenance, software_versions, to_jsonable
from ...core.stack import Window, percentile_window
from .._training import moved_from
from .._training.result import TrainResult
from .params import NETWORK_FIELDS, StyleGANTrainParams

#: Names that moved to engines._training: importable from here, with a DeprecationWarning,
#: for one release.
__getattr__ = moved_from(
    __name__,
    dataset="SliceDataset",
    divergence="TrainingDivergedError",
    hardware="hardware_description cpu_model",
    preview="preview_grid",
)


def _architecture_change(requested, saved) -> str:
    """``"channel_max 8 -> 16, ..."``: how a saved architecture differs from the requested one."""
    requested_sizes, saved_sizes = requested.to_dict(), saved.to_dict()
    return ", ".join(
        f"{name} {requested_sizes[name]} -> {saved_sizes[name]}"
        for name in saved_sizes
        if requested_sizes.get(name) != saved_sizes[name]
    )


def autocast_dtype(precision: str, device: str):
    """The autocast dtype of ``precision`` on ``device`` (``None`` for float32).

    Raises
    ------
    ParameterError
        float16 on a device other than CUDA (CPU autocast supports bfloat16 only).
    """
    import torch

    if precision == "float32":
        return None
    if precision == "float16" and not device.startswith("cuda"):
        raise ParameterError(
            "precision",
            f"float16 needs a CUDA GPU, got device {device!r} (CPU autocast supports "
            "bfloat16 only): use precision='bfloat16' (or precision='float32')",
            options=["precision"],
        )
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}[precision]


def run_train_stylegan(
    volume,
    params: StyleGANTrainParams,
    *,
    out_dir: str | os.PathLike,
    resume: bool = True,
    cancel: CancelToken | None = None,
) -> PyGenerator[Progress, None, TrainResult]:
    """Train (or continue training) a StyleGAN2 on the slices of ``volume``.

    Parameters
    ----------
    volume : array-like
        ``(Z, Y, X)`` grayscale volume (uint8, uint16, int16 or float32).
    params : StyleGANTrainParams
        Training parameters and the network sizes of a new run.
    out_dir : path
        Run directory for checkpoints (created if needed).
    resume : bool
        Continue from the newest checkpoint in ``out_dir`` when there is one
        (weights, EMA, optimizer and RNG states, step counter, window, seed). The
        run keeps the checkpoint's architecture: when the requested network sizes
        differ, a progress message says so, and the result's provenance records the
        requested sizes and ``adopted_saved_config: true``.
    cancel : CancelToken, optional
        Checked every step; on cancel a checkpoint is written and
        :class:`~napari_scigen.core.progress.Cancelled` is raised.

    Yields
    ------
    Progress
        One event per step; ``preview`` holds a grid of EMA samples in
        ``[0, 1]`` every ``params.sample_every`` steps and at the end.

    Returns
    -------
    TrainResult
        ``data`` is the final preview grid; provenance engine ``"train-stylegan"``
        with the parameters actually used, the checkpoint (``model``) and the seed.

    Raises
    ------
    TrainingDivergedError
        If a loss becomes NaN/infinite (the last checkpoint is kept).
    """
    import torch
    import torch.nn.functional as F

    from ...core.device import resolve_device
    from .._training.augment import diff_augment, random_dihedral
    from .._training.dataset import SliceDataset
    from .._training.divergence import larger, smaller
    from .._training.hardware import hardware_description
    from .._training.loop import gan_losses_text, run_steps
    from .._training.preview import preview_grid
    from .._training.resume import (
        check_resume_source,
        restore_optimizer,
        resume_point,
        source_record,
        training_volume,
    )
    from .checkpoint import FORMAT as CHECKPOINT_FORMAT
    from .checkpoint import build_networks, load_checkpoint, save_checkpoint
    from .networks import StyleGANConfig

    array, identity = training_volume(volume)
    requested_config = params.network_config()
    config = requested_config
    device = resolve_device(params.device)
    amp_dtype = autocast_dtype(params.precision, device)
    out_dir = Path(out_dir)

    start = resume_point(out_dir, resume, format=CHECKPOINT_FORMAT, what="StyleGAN")
    checkpoint_path = start.checkpoint
    adopted = False
    if checkpoint_path is not None:
        loaded = load_checkpoint(checkpoint_path, device)
        meta = loaded["metadata"]
        check_resume_source(meta, identity, array, checkpoint_path)
        config = StyleGANConfig.from_dict(meta["config"])
        if config != requested_config:
            adopted = True
            params = params.replace(**{name: getattr(config, name) for name in NETWORK_FIELDS})
            yield Progress(
                min(int(meta["step"]), params.train_steps),
                params.train_steps,
                f"resuming {checkpoint_path.name} with its saved architecture "
                f"({_architecture_change(requested_config, config)}); the requested network "
                "sizes do not apply to a resumed run (resume=False starts over)",
            )
        window = Window(**meta["window"])
        G, G_ema, D = loaded["G"], loaded["G_ema"], loaded["D"]
        state = loaded["train_state"] or {}
        start_step = int(meta["step"])
        images_seen = int(
            meta.get("training", {}).get("images_seen", start_step * params.batch_size)
        )
        wall_before = float(meta.get("training", {}).get("wall_seconds", 0.0))
        seed = int(meta.get("seed", params.seed))
        params = params.replace(seed=seed)  # a resumed run keeps its own seed
    else:
        window = percentile_window(array, *params.window_percentiles)
        G, D = build_networks(config, seed=params.seed)
        G_ema, _ = build_networks(config, seed=params.seed, discriminator=False)
        G_ema.load_state_dict(G.state_dict())
        G, D, G_ema = G.to(device), D.to(device), G_ema.to(device)
        state, start_step, images_seen, wall_before, seed = {}, 0, 0, 0.0, params.seed

    dataset = SliceDataset(array, window, config.resolution, params.axes, params.crop)
    memory_format = torch.channels_last if params.channels_last else torch.contiguous_format
    if params.channels_last:
        G, D, G_ema = (net.to(memory_format=memory_format) for net in (G, D, G_ema))
    device_type = torch.device(device).type

    def autocast(enabled: bool = True):
        if amp_dtype is None or not enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=amp_dtype)

    # float16 gradients can underflow: scale the losses (one scaler per network).
    scaled = amp_dtype is torch.float16
    scaler_G = torch.amp.GradScaler(device_type, enabled=scaled)
    scaler_D = torch.amp.GradScaler(device_type, enabled=scaled)
    G.train().requires_grad_(False)
    D.train().requires_grad_(False)
    G_ema.eval().requires_grad_(False)

    r1_gamma = params.resolved_r1_gamma()
    ratio = params.r1_interval / (params.r1_interval + 1)
    opt_G = torch.optim.Adam(G.parameters(), lr=params.learning_rate, betas=(0.0, 0.99), eps=1e-8)
    opt_D = torch.optim.Adam(
        D.parameters(), lr=params.learning_rate * ratio, betas=(0.0, 0.99**ratio), eps=1e-8
    )
    data_gen = torch.Generator(device="cpu").manual_seed(seed)
    dev_gen = torch.Generator(device=device).manual_seed(seed + 1)
    if state:
        restore_optimizer(opt_G, state["opt_G"], params.learning_rate)
        restore_optimizer(opt_D, state["opt_D"], params.learning_rate * ratio)
        data_gen.set_state(state["rng_data"])
        dev_gen.set_state(state["rng_device"])
        if scaled and "scaler_G" in state:
            scaler_G.load_state_dict(state["scaler_G"])
            scaler_D.load_state_dict(state["scaler_D"])
    preview_z = torch.randn(
        params.preview_count, config.z_dim, generator=torch.Generator().manual_seed(seed + 2)
    ).to(device)

    def make_preview():
        with torch.no_grad():
            ws = G_ema.mapping(preview_z)
            return preview_grid(G_ema.synthesis(ws, noise_mode="const"))

    def metadata(step: int) -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "window": window.as_dict(),
            "train_params": to_jsonable(params.to_dict()),
            "resolved": {"r1_gamma": r1_gamma, "ema_kimg": params.resolved_ema_kimg()},
            "seed": seed,
            "step": step,
            "source": source_record(array, identity),
            "training": {
                "images_seen": images_seen,
                "wall_seconds": wall_before + (time.perf_counter() - started),
                "hardware": hardware_description(device),
            },
            "software": software_versions(),
        }

    def result(path: Path, step: int, preview: np.ndarray) -> TrainResult:
        record = metadata(step)
        provenance = make_provenance(
            "train-stylegan",
            {**params.to_dict(), "device": device},
            model=str(path),
            seed=seed,
            source=record["source"],
            extra={
                "run_dir": str(out_dir),
                "resume": resume,
                "checkpoint": str(path),
                "step": step,
                "resumed_from": start.name,
                "adopted_saved_config": adopted,
                "requested_config": requested_config.to_dict(),
                "config": config.to_dict(),
                "window": record["window"],
                "resolved": record["resolved"],
                "training": record["training"],
            },
        )
        return TrainResult(
            data=preview,
            provenance=provenance,
            checkpoint=path,
            step=step,
            history=history,
            metadata=record,
            adopted_saved_config=bool(adopted),
            resumed_from=start.name,
        )

    def checkpoint(step: int) -> Path:
        train_state = {
            "opt_G": opt_G.state_dict(),
            "opt_D": opt_D.state_dict(),
            "rng_data": data_gen.get_state(),
            "rng_device": dev_gen.get_state(),
        }
        if scaled:
            train_state["scaler_G"] = scaler_G.state_dict()
            train_state["scaler_D"] = scaler_D.state_dict()
        return save_checkpoint(
            out_dir,
            step=step,
            generator=G,
            generator_ema=G_ema,
            discriminator=D,
            metadata=metadata(step),
            train_state=train_state,
            keep=params.keep_checkpoints,
            replaces=start.replaced,
        )

    def sample_ws(batch: int):
        z = torch.randn(batch, config.z_dim, generator=dev_gen, device=device)
        ws = G.mapping(z, update_w_avg_beta=0.995)
        if params.mixing_prob > 0:
            mix = torch.rand([], generator=dev_gen, device=device).item() < params.mixing_prob
            if mix:
                cutoff = int(
                    torch.randint(1, G.num_ws, (), generator=dev_gen, device=device).item()
                )
                z2 = torch.randn(batch, config.z_dim, generator=dev_gen, device=device)
                ws = torch.cat([ws[:, :cutoff], G.mapping(z2)[:, cutoff:]], dim=1)
        return ws

    def disc(images):
        images = images.float()  # augmentation in float32 (a no-op for float32 images)
        if params.augment:
            images = diff_augment(images, generator=dev_gen)
        return D(images.contiguous(memory_format=memory_format)).float()

    ema_nimg_max = params.resolved_ema_kimg() * 1000.0

    def train_step(step: int) -> dict[str, float | None]:
        nonlocal images_seen
        batch = params.batch_size
        real = dataset.sample(batch, data_gen).to(device, memory_format=memory_format)
        if params.augment:
            real = random_dihedral(real, generator=data_gen)

        # Generator step: non-saturating logistic loss.
        G.requires_grad_(True)
        ws = sample_ws(batch)  # the small mapping network (and w_avg) stays float32
        with autocast():
            fake = G.synthesis(ws, generator=dev_gen)
            loss_G = F.softplus(-disc(fake)).mean()
        opt_G.zero_grad(set_to_none=True)
        scaler_G.scale(loss_G).backward()
        scaler_G.step(opt_G)
        scaler_G.update()
        G.requires_grad_(False)

        # Discriminator step (+ lazy R1 on real images).
        D.requires_grad_(True)
        do_r1 = r1_gamma > 0 and step % params.r1_interval == 0
        real_in = real.detach().requires_grad_(do_r1)
        with autocast(enabled=not do_r1):  # R1's gradient of D stays float32
            real_logits = disc(real_in)
        with autocast():
            fake_logits = disc(fake.detach())
        loss_D = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        total_D = loss_D
        r1_value = None
        if do_r1:
            (grad,) = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
            penalty = grad.square().sum(dim=(1, 2, 3)).mean()
            total_D = loss_D + penalty * (r1_gamma / 2) * params.r1_interval
            r1_value = float(penalty.detach())
        opt_D.zero_grad(set_to_none=True)
        scaler_D.scale(total_D).backward()
        scaler_D.step(opt_D)
        scaler_D.update()
        D.requires_grad_(False)

        # EMA of generator weights with ramp-up (a diverged step is never saved).
        images_seen += batch
        ema_nimg = ema_nimg_max
        if params.ema_rampup is not None:
            ema_nimg = min(ema_nimg, images_seen * params.ema_rampup)
        beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)
        return {"loss_G": float(loss_G.detach()), "loss_D": float(loss_D.detach()), "r1": r1_value}

    started = time.perf_counter()
    history: dict[str, list[float]] = {"step": [], "loss_G": [], "loss_D": [], "r1": []}

    step = yield from run_steps(
        train_step,
        params,
        start_step=start_step,
        save=checkpoint,
        history=history,
        what="StyleGAN",
        hint=f"run again with {smaller('learning_rate', params.learning_rate)} or "
        f"{larger('r1_gamma', r1_gamma)}",
        options=("learning_rate", "r1_gamma"),
        last_checkpoint=checkpoint_path,
        cancel=cancel,
        preview=make_preview,
        describe=gan_losses_text,
    )
    path = checkpoint(step) if step > start_step else Path(checkpoint_path)
    return result(path, step, make_preview())
