"""Saving and loading StyleGAN checkpoints without pickles.

A training checkpoint is a directory ``<run_dir>/checkpoint-0001234/`` in the layout of
every napari-scigen trainer (:mod:`napari_scigen.engines._training.checkpoint`):

* ``networks.safetensors``: the weights and buffers of ``G.``, ``G_ema.`` and ``D.``;
* ``train_state.pt``: optimizer states and RNG states, a plain dict of tensors and
  numbers written with :func:`torch.save` and read back with ``weights_only=True``;
* ``checkpoint.json``: the :class:`StyleGANConfig`, the intensity window, the
  training parameters, the step, the seed, wall time, hardware and software
  versions. It is written last, so a directory without it is incomplete.

An exported generator (what ships as the embedded default) is a pair
``name.safetensors`` (``G_ema`` only) + ``name.json`` (same metadata);
:func:`save_generator` writes any generator that way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .._training import moved_from
from .._training.checkpoint import (
    METADATA_FILE,
    NETWORKS_FILE,
    TRAIN_STATE_FILE,
    CheckpointError,
    checkpoint_dir,
    read_tensors,
    read_train_state,
    save_tensors_checkpoint,
)
from .networks import Discriminator, Generator, StyleGANConfig

#: Version tag of the checkpoint format, stored in every JSON file.
FORMAT = "napari-scigen-stylegan/1"


#: Names that moved to engines._training: importable from here, with a DeprecationWarning,
#: for one release.
__getattr__ = moved_from(
    __name__,
    checkpoint="CHECKPOINT_PREFIX checkpoint_name latest_checkpoint list_checkpoints "
    "load_tensors_checkpoint",
    resume="check_resume_source",
)


def _load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """``module.load_state_dict(state, strict=True)`` with a one-line error on a mismatch."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        details = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        raise CheckpointError(
            f"{path}: the weights do not fit the architecture recorded in its JSON "
            f"({details[0] if details else 'state dict mismatch'}); the file is damaged or "
            "belongs to another network"
        ) from None


def build_networks(config: StyleGANConfig, *, seed: int | None = None, discriminator: bool = True):
    """Create ``(G, D)`` (``D`` is ``None`` unless asked) without touching the global RNG.

    Parameters
    ----------
    config : StyleGANConfig
        Architecture.
    seed : int, optional
        Seed of the weight initialisation (``None``: weights are overwritten
        anyway, e.g. when loading, and 0 is used).
    discriminator : bool
        Also build the discriminator.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else int(seed))
        generator = Generator(config)
        disc = Discriminator(config) if discriminator else None
    return generator, disc


def _state_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.{k}": v.detach().to("cpu").contiguous().clone()
        for k, v in module.state_dict().items()
    }


def _split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    start = prefix + "."
    return {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}


def save_checkpoint(
    run_dir: str | os.PathLike,
    *,
    step: int,
    generator: Generator,
    generator_ema: Generator,
    discriminator: Discriminator,
    metadata: dict[str, Any],
    train_state: dict[str, Any] | None = None,
    keep: int | None = 2,
    replaces: list[Path] | tuple[Path, ...] = (),
) -> Path:
    """Write a complete training checkpoint into ``run_dir`` (atomically).

    Parameters
    ----------
    run_dir : path
        Training output directory.
    step : int
        Steps done; names the checkpoint directory.
    generator, generator_ema, discriminator : torch.nn.Module
        The three networks.
    metadata : dict
        JSON-serialisable description (config, window, params, seed, ...).
    train_state : dict, optional
        Optimizer and RNG states (tensors, numbers, lists, dicts only).
    keep : int, optional
        Keep only the newest ``keep`` checkpoints (``None`` keeps all).
    replaces : sequence of pathlib.Path
        Checkpoints of an earlier run that this (started-over) run replaces.

    Returns
    -------
    pathlib.Path
        The checkpoint directory.
    """
    tensors = {}
    tensors.update(_state_tensors("G", generator))
    tensors.update(_state_tensors("G_ema", generator_ema))
    tensors.update(_state_tensors("D", discriminator))
    return save_tensors_checkpoint(
        run_dir,
        step=step,
        tensors=tensors,
        metadata=metadata,
        train_state=train_state,
        keep=keep,
        format=FORMAT,
        replaces=replaces,
    )


#: The most generator parameters a declared StyleGAN config may ask for (4 GB of float32):
#: the NVlabs 1024x1024 generator has about 30 million.
MAX_GENERATOR_PARAMETERS = 1_000_000_000


def declared_parameters(config: StyleGANConfig) -> int:
    """About how many parameters the generator of ``config`` has (nothing is allocated).

    Counts the mapping network, the two modulated 3x3 convolutions and their style
    affines per resolution, and the to-image layers: a slight over-estimate (within 25%) of the built
    network, enough to refuse a config that declares a network too large to build.
    """
    total = (
        int(config.mapping_layers) * max(int(config.z_dim), int(config.w_dim)) * int(config.w_dim)
    )
    res, previous = 4, config.channels(4)
    while res <= config.resolution:
        channels = config.channels(res)
        total += 2 * (9 * previous * channels + int(config.w_dim) * previous)
        total += (int(config.w_dim) + 1) * channels * int(config.img_channels)
        previous, res = channels, res * 2
    return int(total)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read the JSON metadata of a checkpoint directory or an exported generator."""
    path = Path(path)
    json_path = path / METADATA_FILE if path.is_dir() else path.with_suffix(".json")
    if not json_path.is_file():
        raise CheckpointError(f"no StyleGAN metadata at {json_path}")
    try:
        record = json.loads(json_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"{json_path} is damaged (not valid JSON: {error}); the checkpoint is incomplete"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise CheckpointError(
            f"{json_path} is not a napari-scigen StyleGAN file (format {found!r})"
        )
    try:
        config = StyleGANConfig.from_dict(record["config"])
        parameters = declared_parameters(config)
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise CheckpointError(
            f"{json_path} has no valid StyleGAN 'config' ({type(error).__name__}: {error}); "
            "the checkpoint is incomplete or damaged"
        ) from None
    if parameters > MAX_GENERATOR_PARAMETERS:
        raise CheckpointError(
            f"{json_path} declares a generator of about {parameters:.3g} parameters "
            f"(resolution {config.resolution}, channel_base {config.channel_base}, channel_max "
            f"{config.channel_max}, w_dim {config.w_dim}), more than the "
            f"{MAX_GENERATOR_PARAMETERS:.0e} accepted: the file is damaged or not a "
            "napari-scigen StyleGAN generator; nothing was allocated"
        )
    return record


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict[str, Any]:
    """Load every part of a training checkpoint.

    Parameters
    ----------
    path : path
        A checkpoint directory, or a run directory (its newest checkpoint is used).
    device : str
        Torch device for the networks.

    Returns
    -------
    dict
        ``{"G", "G_ema", "D", "metadata", "train_state" (or None), "path"}``.
    """
    path = checkpoint_dir(path, what="StyleGAN")
    metadata = read_metadata(path)
    config = StyleGANConfig.from_dict(metadata["config"])
    tensors = read_tensors(path / NETWORKS_FILE)
    generator, disc = build_networks(config)
    generator_ema, _ = build_networks(config, discriminator=False)
    _load_state(generator, _split_prefix(tensors, "G"), path / NETWORKS_FILE)
    _load_state(generator_ema, _split_prefix(tensors, "G_ema"), path / NETWORKS_FILE)
    _load_state(disc, _split_prefix(tensors, "D"), path / NETWORKS_FILE)
    state_path = path / TRAIN_STATE_FILE
    train_state = read_train_state(state_path) if state_path.is_file() else None
    return {
        "G": generator.to(device),
        "G_ema": generator_ema.to(device).eval().requires_grad_(False),
        "D": disc.to(device),
        "metadata": metadata,
        "train_state": train_state,
        "path": path,
    }


def load_generator(
    path_or_dir: str | os.PathLike, device: str = "cpu"
) -> tuple[Generator, dict[str, Any]]:
    """Load the EMA generator for inference.

    Parameters
    ----------
    path_or_dir : path
        An exported ``.safetensors`` file (with its ``.json`` beside it), a
        checkpoint directory, or a training run directory (newest checkpoint).
    device : str
        Torch device.

    Returns
    -------
    (Generator, dict)
        The generator in eval mode without gradients, and its metadata
        (``config``, ``window``, ``train_params``, ``step``, ...).
    """
    path = Path(path_or_dir)
    if path.is_file() or path.suffix == ".safetensors":
        if not path.is_file():
            raise FileNotFoundError(f"StyleGAN generator file {path} does not exist")
        metadata = read_metadata(path)
        tensors = read_tensors(path)
        prefix = "G_ema" if any(k.startswith("G_ema.") for k in tensors) else None
        state = _split_prefix(tensors, prefix) if prefix else tensors
        weights = path
    else:
        path = checkpoint_dir(path, what="StyleGAN")
        metadata = read_metadata(path)
        weights = path / NETWORKS_FILE
        state = _split_prefix(read_tensors(weights), "G_ema")
    config = StyleGANConfig.from_dict(metadata["config"])
    generator, _ = build_networks(config, discriminator=False)
    _load_state(generator, state, weights)
    return generator.to(device).eval().requires_grad_(False), metadata


def save_generator(
    generator: Generator,
    out_path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a generator as ``out.safetensors`` + ``out.json`` (what engines load by path).

    Parameters
    ----------
    generator : Generator
        The generator to write (e.g. an in-memory one, to pass its path to an engine).
    out_path : path
        Target ``.safetensors`` file; the JSON goes beside it with the same stem.
    metadata : dict, optional
        JSON-serialisable description (``window``, ``step``, ...); the generator's
        ``config`` and the format tag are always recorded.

    Returns
    -------
    pathlib.Path
        The written ``.safetensors`` path.
    """
    from safetensors.torch import save_file

    out_path = Path(out_path).with_suffix(".safetensors")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in generator.state_dict().items()}
    save_file(tensors, str(out_path), metadata={"format": FORMAT})
    record = dict(metadata or {})
    record["config"] = generator.config.to_dict()
    record["format"] = FORMAT
    out_path.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True))
    os.chmod(out_path, 0o644)  # safetensors writes owner-only files; package data must be readable
    return out_path


def export_generator(
    checkpoint: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the EMA generator of a checkpoint as ``out.safetensors`` + ``out.json``.

    Parameters
    ----------
    checkpoint : path
        Checkpoint or run directory.
    out_path : path
        Target ``.safetensors`` file; the JSON goes beside it with the same stem.
    extra_metadata : dict, optional
        Merged into the JSON (e.g. how the default generator was trained).

    Returns
    -------
    pathlib.Path
        The written ``.safetensors`` path.
    """
    generator, metadata = load_generator(checkpoint, "cpu")
    return save_generator(generator, out_path, {**metadata, **(extra_metadata or {})})
