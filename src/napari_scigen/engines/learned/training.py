"""The training loop every learned engine shares: budget, losses, checkpoints, progress.

:func:`train_network` runs Adam on batches drawn from a sampler (``draw(batch_size,
with_real) -> Batch``), predicting a residual over the first input channel, until the
step budget (or the optional time limit) is spent. Losses are counted on the target
pixels only (the batch's ``weight``): L1, L2 or L1 + 0.2 (1 - SSIM); optionally an L1
term on image gradients and a non-saturating adversarial term from a small StyleGAN2
residual discriminator (:class:`~napari_scigen.engines.stylegan.networks.Discriminator`,
reused as a network) that compares composites (known pixels + prediction) with real crops.

On CUDA it uses bfloat16 autocast (float16 + loss scaling where bfloat16 is missing) and
channels-last tensors; on a CPU it runs in float32 with ``threads`` threads and is
bit-identical for a seed and a step budget. With a checkpoint folder, a checkpoint is
written every ``checkpoint_every`` steps and when the job is cancelled; a new run resumes
from it when its task key (which volume and settings it was made for) matches. The
checkpoint files, the checkpoint on cancel and the divergence check (a
:class:`~napari_scigen.engines._training.divergence.TrainingDivergedError`) are the
shared training infrastructure (:mod:`napari_scigen.engines._training`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.validation import InvalidInputError
from .params import LearnedTrainingParams

#: Weight of the SSIM term of the ``l1+ssim`` loss.
SSIM_WEIGHT = 0.2
#: Training losses are recorded every this many steps.
HISTORY_EVERY = 10


@dataclass
class TrainReport:
    """What a training run did (recorded in provenance).

    Attributes
    ----------
    steps : int
        Steps done in total (including those of a resumed checkpoint).
    seconds : float
        Wall time of the training in this call.
    stopped_by : str
        ``"steps"``, ``"time"`` or ``"no training"`` (``train_steps=0``).
    history : dict
        ``{"step": [...], "loss": [...]}`` every :data:`HISTORY_EVERY` steps.
    first_loss, final_loss : float
        Mean loss of the first and the last tenth of this call's steps (NaN if none).
    resumed_from : str or None
        The checkpoint the run continued from.
    checkpoint : str or None
        The last checkpoint written.
    """

    steps: int = 0
    seconds: float = 0.0
    stopped_by: str = "steps"
    history: dict[str, list[float]] = field(default_factory=lambda: {"step": [], "loss": []})
    first_loss: float = float("nan")
    final_loss: float = float("nan")
    resumed_from: str | None = None
    checkpoint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "stopped_by": self.stopped_by,
            "first_loss": self.first_loss,
            "final_loss": self.final_loss,
            "resumed_from": self.resumed_from,
            "checkpoint": self.checkpoint,
            "loss_history": self.history,
        }


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"7 min"``, ``"1 h 05 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {minutes:02d} min"


@contextlib.contextmanager
def torch_threads(device: str, threads: int | None):
    """Set torch's CPU thread count for the block (restored afterwards)."""
    import torch

    if not device.startswith("cpu") or threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast(device: str):
    """bfloat16/float16 autocast on CUDA, nothing elsewhere."""
    import torch

    if not device.startswith("cuda"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _ssim_map(a, b):
    """SSIM map of two ``(B, 1, H, W)`` images in [0, 1] units (7x7 Gaussian window)."""
    import torch
    import torch.nn.functional as F

    coords = torch.arange(7, dtype=a.dtype, device=a.device) - 3
    kernel = torch.exp(-(coords**2) / (2 * 1.5**2))
    kernel = kernel / kernel.sum()
    window = (kernel[:, None] * kernel[None, :])[None, None]

    def blur(x):
        return F.conv2d(F.pad(x, (3, 3, 3, 3), mode="replicate"), window)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )


def reconstruction_loss(prediction, target, weight, base, params: LearnedTrainingParams):
    """The loss on the target pixels (see the module docstring)."""
    count = weight.sum().clamp(min=1.0)
    difference = prediction - target
    if params.loss == "l2":
        loss = (difference.square() * weight).sum() / count
    else:
        loss = (difference.abs() * weight).sum() / count
    if params.loss == "l1+ssim" or params.gradient_weight > 0:
        composite = weight * prediction + (1 - weight) * base
        truth = weight * target + (1 - weight) * base
        if params.loss == "l1+ssim":
            similarity = (_ssim_map(composite, truth) * weight).sum() / count
            loss = loss + SSIM_WEIGHT * (1 - similarity)
        if params.gradient_weight > 0:
            terms = []
            for axis in (-1, -2):
                d_pred = composite.diff(dim=axis)
                d_true = truth.diff(dim=axis)
                w = weight.narrow(axis, 1, weight.shape[axis] - 1)
                terms.append(((d_pred - d_true).abs() * w).sum() / w.sum().clamp(min=1.0))
            loss = loss + params.gradient_weight * sum(terms)
    return loss


def _discriminator(side: int, device: str):
    from ..stylegan.networks import Discriminator, StyleGANConfig

    config = StyleGANConfig(resolution=side, channel_base=1024, channel_max=64)
    return Discriminator(config).to(device)


def _schedule(params: LearnedTrainingParams, step: int, total: int, elapsed: float) -> float:
    warmup = max(1, min(50, total // 10))
    if step < warmup:
        return (step + 1) / warmup
    progress = step / max(1, total)
    if params.train_seconds:
        progress = max(progress, elapsed / params.train_seconds)
    progress = min(1.0, progress)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def train_network(
    network,
    draw: Callable[..., Any],
    params: LearnedTrainingParams,
    *,
    device: str,
    task_key: str,
    rng: np.random.Generator,
    progress: Callable[[float, str], Progress],
    label: str,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, TrainReport]:
    """Train ``network`` in place (it ends on ``device``, in eval mode).

    Parameters
    ----------
    network : ResidualUNet
        Starting weights (default, file or random).
    draw : callable
        ``draw(batch_size, with_real=bool) -> Batch`` (uses ``rng``).
    params : LearnedTrainingParams
        Budget, losses, checkpoints.
    device : str
        A resolved torch device.
    task_key : str
        Identifies the volume and settings; a checkpoint resumes only with the same key.
    rng : numpy.random.Generator
        The sampler's generator (its state is checkpointed and restored).
    progress : callable
        ``progress(fraction, message) -> Progress`` on the job's overall scale.
    label : str
        Engine name for messages.
    cancel : CancelToken, optional
        Checked every step; a checkpoint is written first when a folder is set.

    Raises
    ------
    InvalidInputError
        A checkpoint folder holding a checkpoint of another task.
    TrainingDivergedError
        A diverged loss (an ``InvalidInputError`` too: the user changes a setting).
    """
    import torch
    import torch.nn.functional as F

    from .._training.divergence import check_finite, smaller
    from .._training.loop import checkpoint_on_cancel
    from . import store

    report = TrainReport()
    total = params.train_steps
    adversarial = params.adversarial_weight > 0
    network.to(device)
    if device.startswith("cuda"):
        network.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(network.parameters(), lr=params.learning_rate, betas=(0.9, 0.99))
    disc = disc_optimizer = None
    if adversarial:
        disc = _discriminator(params.crop_size, device)
        disc_optimizer = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.99))
    step = 0
    if params.checkpoint_dir:
        from .._training.resume import refuse_other_checkpoints

        refuse_other_checkpoints(params.checkpoint_dir, format=store.FORMAT, what="learned-engine")
    if params.checkpoint_dir and params.resume and store.latest(params.checkpoint_dir):
        loaded = store.load_checkpoint(params.checkpoint_dir)
        meta = loaded["metadata"]
        if meta.get("task_key") != task_key:
            raise InvalidInputError(
                f"{loaded['path']} was made for another volume or other settings; choose "
                "another checkpoint folder, or resume=False to start over there",
                options=["resume"],
            )
        store.load_into(network, loaded["tensors"], "net")
        state = loaded["train_state"] or {}
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
        if disc is not None and "disc" in state:
            store.load_into(disc, loaded["tensors"], "disc")
            disc_optimizer.load_state_dict(state["disc"])
        try:
            rng.bit_generator.state = meta["rng_state"]
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise InvalidInputError(
                f"{loaded['path']}: its random-generator state is missing or damaged "
                f"({type(error).__name__}); choose another checkpoint folder, or resume=False "
                "to start over there",
                options=["resume"],
            ) from None
        step = int(meta["step"])
        report.history = meta.get("history", report.history)
        report.resumed_from = str(loaded["path"])
        yield progress(0.0, f"{label}: resuming {loaded['path'].name} at step {step}/{total}")

    def checkpoint() -> None:
        if not params.checkpoint_dir:
            return
        modules = {"net": network} if disc is None else {"net": network, "disc": disc}
        state = {"optimizer": optimizer.state_dict()}
        if disc is not None:
            state["disc"] = disc_optimizer.state_dict()
        path = store.save_checkpoint(
            params.checkpoint_dir,
            step=step,
            modules=modules,
            metadata={
                "task_key": task_key,
                "rng_state": rng.bit_generator.state,
                "history": report.history,
                "config": network.config.to_dict(),
                "params": params.to_dict(),
            },
            train_state=state,
        )
        report.checkpoint = str(path)

    if total == 0:
        report.stopped_by = "no training"
    started = time.perf_counter()
    losses: list[float] = []
    start_step = step
    network.train()
    with checkpoint_on_cancel(checkpoint, lambda: step > start_step):
        while step < total:
            check_cancelled(cancel)
            elapsed = time.perf_counter() - started
            if params.train_seconds and elapsed >= params.train_seconds:
                report.stopped_by = "time"
                break
            for group in optimizer.param_groups:
                group["lr"] = params.learning_rate * _schedule(params, step, total, elapsed)
            batch = draw(params.batch_size, with_real=adversarial)
            inputs = torch.from_numpy(batch.inputs).to(device)
            target = torch.from_numpy(batch.target).to(device)
            weight = torch.from_numpy(batch.weight).to(device)
            if device.startswith("cuda"):
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            base = inputs[:, :1]
            with autocast(device):
                prediction = base + network(inputs).float()
            loss = reconstruction_loss(prediction.float(), target, weight, base, params)
            # The discriminator sees square crop_size crops only: a plane of a volume with
            # fewer slices than crop_size gives shorter crops, trained without that term.
            judged = (
                adversarial and prediction.shape[-1] == prediction.shape[-2] == params.crop_size
            )
            if judged:
                composite = weight * prediction + (1 - weight) * base
                loss = (
                    loss + params.adversarial_weight * F.softplus(-disc(composite * 2 - 1)).mean()
                )
            value = float(loss.detach())
            check_finite(
                {"loss": value},
                step=step + 1,
                what=label,
                hint=f"run again with {smaller('learning_rate', params.learning_rate)}",
                options=("learning_rate",),
                last_checkpoint=_path(report.checkpoint or report.resumed_from),
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if judged and tuple(batch.real.shape[-2:]) == (params.crop_size,) * 2:
                real = torch.from_numpy(batch.real).to(device) * 2 - 1
                fake = (weight * prediction + (1 - weight) * base).detach() * 2 - 1
                disc_loss = F.softplus(disc(fake)).mean() + F.softplus(-disc(real)).mean()
                disc_optimizer.zero_grad(set_to_none=True)
                disc_loss.backward()
                disc_optimizer.step()
            step += 1
            losses.append(value)
            if step % HISTORY_EVERY == 0:
                report.history["step"].append(step)
                report.history["loss"].append(float(np.mean(losses[-HISTORY_EVERY:])))
            if params.checkpoint_dir and step % params.checkpoint_every == 0:
                checkpoint()
            yield progress(
                step / total, _message(label, params, step, start_step, total, losses, started)
            )
    if params.checkpoint_dir and step > start_step:
        checkpoint()
    report.steps = step
    report.seconds = time.perf_counter() - started
    if losses:
        tenth = max(1, len(losses) // 10)
        report.first_loss = float(np.mean(losses[:tenth]))
        report.final_loss = float(np.mean(losses[-tenth:]))
    network.eval()
    return report


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def _message(label, params, step, start_step, total, losses, started) -> str:
    elapsed = time.perf_counter() - started
    done = step - start_step
    remaining = elapsed / max(1, done) * (total - step)
    if params.train_seconds:
        remaining = min(remaining, max(0.0, params.train_seconds - elapsed))
        budget = f"training {elapsed:.0f}/{params.train_seconds:.0f} s (step {step}/{total})"
    else:
        budget = f"training step {step}/{total}"
    recent = float(np.mean(losses[-HISTORY_EVERY:]))
    return f"{label}: {budget}, loss {recent:.4f}, ETA {format_duration(remaining)}"
