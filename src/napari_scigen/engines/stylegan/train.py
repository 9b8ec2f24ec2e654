"""Train a StyleGAN2 generator on the slices of one microCT volume.

Recipe (Karras et al. 2020 and 2020b "Training GANs with limited data"):
non-saturating logistic loss, lazy R1 regularisation on real images every
``r1_interval`` steps, exponential moving average of the generator weights
(``G_ema``, with a ramp-up), style mixing, Adam with ``beta1 = 0``. For small
datasets real slices get random flips/90-degree rotations and both real and
generated images get differentiable augmentation (:mod:`.augment`) before the
discriminator. Path-length regularisation is not used (it mainly helps
inversion smoothness at large scale and costs an extra backward pass).

Mixed precision (``precision``): the generator and discriminator forward passes run
under :func:`torch.autocast` in bfloat16 or float16 (float16 on CUDA only, with a
:class:`torch.amp.GradScaler` per network); weights, optimizer states, checkpoints
and the R1 penalty (its real-image pass runs with autocast off) stay float32.
``channels_last`` puts the networks and images in channels-last memory layout.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Generator as PyGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.params import ParameterError
from ...core.progress import Cancelled, CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance, software_versions, to_jsonable
from ...core.result import EngineResult
from ...core.stack import Window, percentile_window
from ...core.validation import InvalidInputError, check_image
from .params import AXIS_NAMES, NETWORK_FIELDS, StyleGANTrainParams


@dataclass
class TrainResult(EngineResult):
    """What :func:`run_train_stylegan` returns: an :class:`EngineResult` whose ``data``
    is the final preview grid, plus the run's state.

    Attributes
    ----------
    checkpoint : pathlib.Path
        The last checkpoint written.
    step : int
        Steps done in total (over all resumed runs).
    history : dict of str to list of float
        ``"step"``, ``"loss_G"``, ``"loss_D"``, ``"r1"`` of this run (``r1`` is
        NaN on steps without regularisation).
    metadata : dict
        The metadata stored with the checkpoint.
    adopted_saved_config : bool
        The run resumed a checkpoint whose saved architecture replaced the requested one
        (``provenance["params"]`` holds the sizes used; front-ends show them).
    """

    checkpoint: Path | None = None
    step: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    adopted_saved_config: bool = False

    @property
    def preview(self) -> np.ndarray:
        """A final grid of EMA samples in ``[0, 1]`` (the same array as ``data``)."""
        return self.data


class TrainingDivergedError(FloatingPointError, InvalidInputError):
    """A loss became NaN or infinite: a user error (settings to change), as in the learned engine.

    Every front-end reports it in one line (the command line exits 2), like the learned
    engine's divergence; it stays a ``FloatingPointError`` for code that catches that.
    """


class SliceDataset:
    """Random (cropped) slices of a windowed volume, as ``[-1, 1]`` float tensors.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(Z, Y, X)`` volume on its own scale.
    window : Window
        Intensity window mapped to ``[-1, 1]``.
    resolution : int
        Output size.
    axes : tuple of str
        Slicing directions.
    crop : bool
        Random crops (``True``) or whole slices resized to ``resolution``.
    """

    def __init__(
        self, volume: np.ndarray, window: Window, resolution: int, axes: tuple[str, ...], crop: bool
    ) -> None:
        import torch

        self.volume = torch.from_numpy(window.to_unit(volume) * 2.0 - 1.0)
        self.resolution = resolution
        self.axes = tuple(axes)
        self.crop = crop
        shape = volume.shape
        for axis in self.axes:
            plane = [s for i, s in enumerate(shape) if i != AXIS_NAMES.index(axis)]
            if crop and min(plane) < resolution:
                raise InvalidInputError(
                    f"slices perpendicular to {axis} are {plane[0]}x{plane[1]}, smaller than the "
                    f"generator resolution {resolution}: choose a resolution <= {min(plane)} "
                    "or use crop=False to resize whole slices"
                )

    def sample(self, batch: int, generator) -> Any:
        """Draw ``batch`` slices ``(batch, 1, R, R)`` using ``generator`` (a CPU torch.Generator)."""
        import torch
        import torch.nn.functional as F

        res = self.resolution
        out = []
        depth, height, width = self.volume.shape

        def randint(high: int) -> int:
            return int(torch.randint(0, max(1, high), (1,), generator=generator))

        for _ in range(batch):
            axis = self.axes[randint(len(self.axes))]
            if axis == "z":
                plane = self.volume[randint(depth)]
            elif axis == "y":
                plane = self.volume[:, randint(height), :]
            else:
                plane = self.volume[:, :, randint(width)]
            if self.crop:
                top = randint(plane.shape[0] - res + 1)
                left = randint(plane.shape[1] - res + 1)
                tile = plane[top : top + res, left : left + res]
            else:
                tile = F.interpolate(
                    plane[None, None],
                    size=(res, res),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )[0, 0]
            out.append(tile)
        return torch.stack(out).unsqueeze(1).contiguous()


def preview_grid(images, columns: int | None = None) -> np.ndarray:
    """Tile ``(N, 1, H, W)`` images in ``[-1, 1]`` into one ``[0, 1]`` float32 grid."""
    array = images.detach().float().cpu().numpy()[:, 0]
    count, height, width = array.shape
    columns = columns or max(1, int(math.ceil(math.sqrt(count))))
    rows = int(math.ceil(count / columns))
    grid = np.zeros((rows * height, columns * width), np.float32)
    for i, image in enumerate(array):
        r, c = divmod(i, columns)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = image
    return np.clip((grid + 1.0) / 2.0, 0.0, 1.0)


def hardware_description(device: str) -> dict[str, Any]:
    """Where training ran: CPU model/cores/threads or the GPU name."""
    import torch

    info: dict[str, Any] = {
        "device": device,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    model = cpu_model()
    if model:
        info["cpu_model"] = model
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def cpu_model() -> str | None:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else ``None``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


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
            "bfloat16 only): use --precision bfloat16 or float32",
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
    from ...core.io.identity import array_identity
    from .augment import diff_augment, random_dihedral
    from .checkpoint import (
        build_networks,
        check_resume_source,
        latest_checkpoint,
        list_checkpoints,
        load_checkpoint,
        save_checkpoint,
    )
    from .networks import StyleGANConfig

    array = check_image(volume, name="training volume", ndim=(3,))
    identity = array_identity(array)
    requested_config = params.network_config()
    config = requested_config
    device = resolve_device(params.device)
    amp_dtype = autocast_dtype(params.precision, device)
    out_dir = Path(out_dir)

    checkpoint_path = latest_checkpoint(out_dir) if resume else None
    replaced = [] if resume else list_checkpoints(out_dir)  # a run started over replaces them
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
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        data_gen.set_state(state["rng_data"])
        dev_gen.set_state(state["rng_device"])
        for group in opt_G.param_groups:  # a resumed run may be given another lr
            group["lr"] = params.learning_rate
        for group in opt_D.param_groups:
            group["lr"] = params.learning_rate * ratio
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
            "source": {"shape": list(array.shape), "dtype": array.dtype.name, "content": identity},
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
                "resumed_from": checkpoint_path.name if checkpoint_path is not None else None,
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
            replaces=replaced,
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

    started = time.perf_counter()
    history: dict[str, list[float]] = {"step": [], "loss_G": [], "loss_D": [], "r1": []}
    total = params.train_steps
    last_path = checkpoint_path
    step = start_step
    ema_nimg_max = params.resolved_ema_kimg() * 1000.0
    if step >= total:
        preview = make_preview()
        yield Progress(total, total, f"already trained for {step} steps", preview)
        return result(Path(last_path), step, preview)

    try:
        while step < total:
            check_cancelled(cancel)
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
            r1_value = float("nan")
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

            value_G, value_D = float(loss_G.detach()), float(loss_D.detach())
            if not (
                math.isfinite(value_G)
                and math.isfinite(value_D)
                and (not do_r1 or math.isfinite(r1_value))
            ):
                raise TrainingDivergedError(
                    f"StyleGAN training diverged at step {step + 1}: loss_G={value_G}, loss_D={value_D}, "
                    f"R1={r1_value}. Lower learning_rate (now {params.learning_rate}) or raise r1_gamma (now {r1_gamma}); "
                    f"the last good checkpoint is {last_path}"
                )

            # EMA of generator weights with ramp-up.
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

            step += 1
            history["step"].append(step)
            history["loss_G"].append(value_G)
            history["loss_D"].append(value_D)
            history["r1"].append(r1_value)
            preview = make_preview() if (step % params.sample_every == 0 or step == total) else None
            if step % params.checkpoint_every == 0 and step < total:
                last_path = checkpoint(step)
            yield Progress(
                step, total, f"step {step}/{total}  G {value_G:.3f}  D {value_D:.3f}", preview
            )
    except (Cancelled, GeneratorExit, KeyboardInterrupt):
        # Cancelled by token, Ctrl-C, or the consumer closed the generator: keep the work done.
        if step > start_step:
            checkpoint(step)
        raise
    last_path = checkpoint(step)
    return result(last_path, step, make_preview())
