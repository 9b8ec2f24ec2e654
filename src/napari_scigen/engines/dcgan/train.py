"""Train a DCGAN on the slices of one microCT volume (task ``train``, method ``dcgan``).

The classical recipe (Radford et al. 2016): binary cross-entropy (non-saturating
generator loss), Adam with ``lr = 2e-4`` and ``beta1 = 0.5``, BatchNorm in both networks.
Everything around the step is the shared training infrastructure
(:mod:`napari_scigen.engines._training`): random crops of the windowed slices
(:class:`~napari_scigen.engines._training.dataset.SliceDataset`), flips and 90-degree
rotations of real slices plus differentiable augmentation before the discriminator
(:mod:`~napari_scigen.engines._training.augment`), atomic safetensors + JSON checkpoints
with the optimizer and RNG states (read with ``weights_only=True``), resume from the
newest one, the step loop (previews, progress, a checkpoint on cancel, divergence as a
user error).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator as PyGenerator
from pathlib import Path
from typing import Any

from ...core.progress import CancelToken, Progress
from ...core.provenance import make_provenance, software_versions, to_jsonable
from .params import DCGAN_NETWORK_FIELDS, DCGANTrainParams

#: Format tag of DCGAN checkpoints.
DCGAN_FORMAT = "napari-scigen-dcgan/1"


def load_dcgan(path: str | os.PathLike, device: str = "cpu"):
    """Load ``(G, D, record)`` from a DCGAN run or checkpoint folder (newest checkpoint).

    ``record`` is the loader's dict: ``metadata`` (config, window, step...), ``train_state``
    and ``path``. Both networks are on ``device`` in train mode.
    """
    from .._training.checkpoint import load_tensors_checkpoint
    from .networks import DCGANConfig, build_dcgan

    record = load_tensors_checkpoint(path, format=DCGAN_FORMAT, what="DCGAN")
    config = DCGANConfig.from_dict(record["metadata"]["config"])
    G, D = build_dcgan(config)
    tensors = record["tensors"]
    for prefix, module in (("G", G), ("D", D)):
        start = prefix + "."
        module.load_state_dict(
            {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}, strict=True
        )
    return G.to(device), D.to(device), record


def run_train_dcgan(
    volume,
    params: DCGANTrainParams,
    *,
    out_dir: str | os.PathLike,
    resume: bool = True,
    cancel: CancelToken | None = None,
) -> PyGenerator[Progress, None, Any]:
    """Train (or continue training) a DCGAN on the slices of ``volume``.

    Parameters
    ----------
    volume : array-like
        ``(Z, Y, X)`` grayscale volume.
    params : DCGANTrainParams
    out_dir : path
        Run folder for checkpoints (created).
    resume : bool
        Continue from the newest checkpoint in ``out_dir`` (weights, optimizers, RNG
        states, step, window, seed and its saved architecture).
    cancel : CancelToken, optional
        Checked every step; on cancel a checkpoint is written and ``Cancelled`` raised.

    Returns
    -------
    TrainResult
        ``data``: the final preview grid in ``[0, 1]``; ``checkpoint``, ``step``,
        ``history`` (``loss_G``, ``loss_D``); provenance engine ``"train-dcgan"``.

    Raises
    ------
    TrainingDivergedError
        If a loss becomes NaN/infinite (a user error; the last checkpoint is kept).
    """
    import torch
    import torch.nn.functional as F

    from ...core.device import resolve_device
    from ...core.stack import Window, percentile_window
    from .._training.augment import diff_augment, random_dihedral
    from .._training.checkpoint import save_tensors_checkpoint
    from .._training.dataset import SliceDataset
    from .._training.divergence import smaller
    from .._training.hardware import hardware_description
    from .._training.loop import gan_losses_text, run_steps
    from .._training.preview import preview_grid
    from .._training.result import TrainResult
    from .._training.resume import (
        check_resume_source,
        restore_optimizer,
        resume_point,
        source_record,
        training_volume,
    )
    from .networks import build_dcgan

    array, identity = training_volume(volume)
    device = resolve_device(params.device)
    out_dir = Path(out_dir)
    start = resume_point(out_dir, resume, format=DCGAN_FORMAT, what="DCGAN")
    checkpoint_path = start.checkpoint
    if checkpoint_path is not None:
        G, D, loaded = load_dcgan(checkpoint_path, device)
        meta = loaded["metadata"]
        check_resume_source(meta, identity, array, checkpoint_path)
        config = G.config
        params = params.replace(
            seed=int(meta["seed"]), **{name: getattr(config, name) for name in DCGAN_NETWORK_FIELDS}
        )
        window = Window(**meta["window"])
        state = loaded["train_state"] or {}
        start_step = int(meta["step"])
        wall_before = float(meta.get("training", {}).get("wall_seconds", 0.0))
    else:
        config = params.network_config()
        window = percentile_window(array, *params.window_percentiles)
        G, D = build_dcgan(config, seed=params.seed)
        G, D = G.to(device), D.to(device)
        state, start_step, wall_before = {}, 0, 0.0
    seed = params.seed
    dataset = SliceDataset(array, window, config.resolution, params.axes, params.crop)
    betas = (params.beta1, 0.999)
    opt_G = torch.optim.Adam(G.parameters(), lr=params.learning_rate, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=params.learning_rate, betas=betas)
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(seed + 1)
    if state:
        restore_optimizer(opt_G, state["opt_G"], params.learning_rate)
        restore_optimizer(opt_D, state["opt_D"], params.learning_rate)
        data_gen.set_state(state["rng_data"])
        noise_gen.set_state(state["rng_noise"])
    preview_z = torch.randn(
        params.preview_count, config.z_dim, generator=torch.Generator().manual_seed(seed + 2)
    ).to(device)
    started = time.perf_counter()
    history: dict[str, list[float]] = {"step": [], "loss_G": [], "loss_D": []}

    def make_preview():
        G.eval()
        with torch.no_grad():
            grid = preview_grid(G(preview_z))
        G.train()
        return grid

    def metadata(step: int) -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "window": window.as_dict(),
            "train_params": to_jsonable(params.to_dict()),
            "seed": seed,
            "step": step,
            "source": source_record(array, identity),
            "training": {
                "wall_seconds": wall_before + (time.perf_counter() - started),
                "hardware": hardware_description(device),
            },
            "software": software_versions(),
        }

    def checkpoint(step: int) -> Path:
        tensors = {f"G.{k}": v for k, v in G.state_dict().items()}
        tensors.update({f"D.{k}": v for k, v in D.state_dict().items()})
        train_state = {
            "opt_G": opt_G.state_dict(),
            "opt_D": opt_D.state_dict(),
            "rng_data": data_gen.get_state(),
            "rng_noise": noise_gen.get_state(),
        }
        return save_tensors_checkpoint(
            out_dir,
            step=step,
            tensors=tensors,
            metadata=metadata(step),
            train_state=train_state,
            keep=params.keep_checkpoints,
            format=DCGAN_FORMAT,
            replaces=start.replaced,
        )

    def result(path: Path, step: int, preview) -> TrainResult:
        record = metadata(step)
        provenance = make_provenance(
            "train-dcgan",
            {**params.to_dict(), "device": device},
            model=str(path),
            seed=seed,
            source=record["source"],
            extra={
                "run_dir": str(out_dir),
                "checkpoint": str(path),
                "step": step,
                "resumed_from": start.name,
                "config": config.to_dict(),
                "window": record["window"],
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
            resumed_from=start.name,
        )

    def disc(images):
        if params.augment:
            images = diff_augment(images, generator=noise_gen)
        return D(images)

    def train_step(step: int) -> dict[str, float]:
        batch = params.batch_size
        real = dataset.sample(batch, data_gen)
        if params.augment:
            real = random_dihedral(real, generator=data_gen)
        real = real.to(device)
        z = torch.randn(batch, config.z_dim, generator=noise_gen).to(device)
        fake = G(z)
        # discriminator: real -> 1, fake -> 0
        loss_D = F.softplus(-disc(real)).mean() + F.softplus(disc(fake.detach())).mean()
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        # generator: non-saturating loss
        loss_G = F.softplus(-disc(fake)).mean()
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
        return {"loss_G": float(loss_G.detach()), "loss_D": float(loss_D.detach())}

    G.train()
    D.train()
    step = yield from run_steps(
        train_step,
        params,
        start_step=start_step,
        save=checkpoint,
        history=history,
        what="DCGAN",
        hint=f"run again with {smaller('learning_rate', params.learning_rate)}",
        options=("learning_rate",),
        last_checkpoint=checkpoint_path,
        cancel=cancel,
        preview=make_preview,
        describe=gan_losses_text,
    )
    path = checkpoint(step) if step > start_step else Path(checkpoint_path)
    return result(path, step, make_preview())
