"""Saving and loading StyleGAN checkpoints without pickles.

A training checkpoint is a directory ``<run_dir>/checkpoint-0001234/`` holding

* ``networks.safetensors``: the weights and buffers of ``G.``, ``G_ema.`` and ``D.``;
* ``train_state.pt``: optimizer states and RNG states, a plain dict of tensors and
  numbers written with :func:`torch.save` and read back with ``weights_only=True``;
* ``checkpoint.json``: the :class:`StyleGANConfig`, the intensity window, the
  training parameters, the step, the seed, wall time, hardware and software
  versions. It is written last, so a directory without it is incomplete.

A directory is written under a temporary name and renamed when complete, so a
checkpoint interrupted half-way never shadows the previous one.

An exported generator (what ships as the embedded default) is a pair
``name.safetensors`` (``G_ema`` only) + ``name.json`` (same metadata);
:func:`save_generator` writes any generator that way.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .networks import Discriminator, Generator, StyleGANConfig

#: Version tag of the checkpoint format, stored in every JSON file.
FORMAT = "napari-scigen-stylegan/1"
CHECKPOINT_PREFIX = "checkpoint-"
NETWORKS_FILE = "networks.safetensors"
TRAIN_STATE_FILE = "train_state.pt"
METADATA_FILE = "checkpoint.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, damaged or does not match what was asked for."""


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, all finite, or a one-line :class:`CheckpointError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a valid safetensors file ({' '.join(str(error).split())}); "
            "it was not loaded"
        ) from None
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:
        raise CheckpointError(
            f"{path} holds NaN/infinite weights ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}): the generator is broken; use an earlier "
            "checkpoint or retrain"
        )
    return tensors


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


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint taken after ``step`` steps."""
    return f"{CHECKPOINT_PREFIX}{int(step):07d}"


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
        replaces=replaces,
    )


def save_tensors_checkpoint(
    run_dir: str | os.PathLike,
    *,
    step: int,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, Any],
    train_state: dict[str, Any] | None = None,
    keep: int | None = 2,
    format: str = FORMAT,  # noqa: A002 - the word of the JSON files
    replaces: list[Path] | tuple[Path, ...] = (),
) -> Path:
    """Write ``checkpoint-<step>/`` (tensors, train state, JSON) into ``run_dir`` atomically.

    The checkpoint layout of every napari-scigen training engine (StyleGAN through
    :func:`save_checkpoint`; DCGAN and the LoRA fine-tuning directly): ``tensors`` go to
    ``networks.safetensors``, ``train_state`` (tensors, numbers, lists, dicts only) to
    ``train_state.pt`` (read back with ``weights_only=True``), ``metadata`` plus
    ``format`` and ``step`` to ``checkpoint.json``, written last. Only the newest
    ``keep`` checkpoints are kept (``None`` keeps all). ``replaces``: the checkpoints of
    an earlier run in ``run_dir`` that a run started over replaces; they are removed once
    this one is written (so the newest checkpoint is always this run's).
    """
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / checkpoint_name(step)
    tmp = run_dir / (final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    save_file(tensors, str(tmp / NETWORKS_FILE), metadata={"format": format})
    if train_state is not None:
        torch.save(train_state, tmp / TRAIN_STATE_FILE)
    record = dict(metadata, format=format, step=int(step))
    (tmp / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in replaces:
        if Path(old) != final:
            shutil.rmtree(old, ignore_errors=True)
    if keep is not None and keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def check_resume_source(metadata: dict[str, Any], identity: str, array, path: Path) -> None:
    """Refuse to resume a training run on other data than it was trained on.

    Parameters
    ----------
    metadata : dict
        The checkpoint's metadata; ``source.content`` is the saved
        :func:`~napari_scigen.core.io.identity.array_identity` (checkpoints written
        before it was recorded are compared by shape and dtype only).
    identity : str
        The identity of the volume given now.
    array : numpy.ndarray
        The volume given now.
    path : pathlib.Path
        The checkpoint, for the message.

    Raises
    ------
    InvalidInputError
        When the content (or shape/dtype) differs.
    """
    from ...core.validation import InvalidInputError

    source = metadata.get("source") if isinstance(metadata.get("source"), dict) else {}
    saved = source.get("content")
    now = {"shape": list(array.shape), "dtype": array.dtype.name}
    same_layout = (
        source.get("shape", now["shape"]) == now["shape"]
        and source.get("dtype", now["dtype"]) == now["dtype"]
    )
    if (saved is None or saved == identity) and same_layout:
        return
    was = f"{source.get('shape')} {source.get('dtype')}"
    detail = (
        f"same shape and dtype, other values: content {saved} -> {identity}"
        if same_layout
        else f"{was} -> {now['shape']} {now['dtype']}"
    )
    raise InvalidInputError(
        f"{path} was trained on other data ({detail}): pass the volume it was trained on to "
        "resume, another output folder, or resume=False to start over"
    )


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``run_dir``, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [
        p
        for p in run_dir.iterdir()
        if p.is_dir()
        and p.name.startswith(CHECKPOINT_PREFIX)
        and not p.name.endswith(".tmp")
        and (p / METADATA_FILE).is_file()
        and (p / NETWORKS_FILE).is_file()
    ]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory in ``run_dir``, or ``None``."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


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
    path = _resolve_checkpoint_dir(path)
    metadata = read_metadata(path)
    config = StyleGANConfig.from_dict(metadata["config"])
    tensors = _read_tensors(path / NETWORKS_FILE)
    generator, disc = build_networks(config)
    generator_ema, _ = build_networks(config, discriminator=False)
    _load_state(generator, _split_prefix(tensors, "G"), path / NETWORKS_FILE)
    _load_state(generator_ema, _split_prefix(tensors, "G_ema"), path / NETWORKS_FILE)
    _load_state(disc, _split_prefix(tensors, "D"), path / NETWORKS_FILE)
    state_path = path / TRAIN_STATE_FILE
    train_state = _read_train_state(state_path) if state_path.is_file() else None
    return {
        "G": generator.to(device),
        "G_ema": generator_ema.to(device).eval().requires_grad_(False),
        "D": disc.to(device),
        "metadata": metadata,
        "train_state": train_state,
        "path": path,
    }


def _read_train_state(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; a file holding anything else is refused, never run."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on foreign pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        reason = "damaged" if isinstance(error, EOFError) else "not a safe weights file"
        raise CheckpointError(
            f"{path} is {reason} (it holds more than tensors and numbers) and was not "
            "loaded; delete it to resume without the optimizer state, or start a new run"
        ) from None


def _resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"StyleGAN checkpoint {path} does not exist")
    if path.is_dir() and not (path / METADATA_FILE).is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(
                f"{path} holds no complete StyleGAN checkpoint ({CHECKPOINT_PREFIX}*/ with {METADATA_FILE})"
            )
        return latest
    return path


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
        tensors = _read_tensors(path)
        prefix = "G_ema" if any(k.startswith("G_ema.") for k in tensors) else None
        state = _split_prefix(tensors, prefix) if prefix else tensors
        weights = path
    else:
        path = _resolve_checkpoint_dir(path)
        metadata = read_metadata(path)
        weights = path / NETWORKS_FILE
        state = _split_prefix(_read_tensors(weights), "G_ema")
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


def load_tensors_checkpoint(
    path: str | os.PathLike,
    *,
    format: str,  # noqa: A002 - the word of the JSON files
    what: str,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_tensors_checkpoint`.

    Parameters
    ----------
    path : path
        A checkpoint directory, or a run directory (its newest checkpoint is used).
    format : str
        The format tag the JSON must carry.
    what : str
        What the checkpoint holds, for messages (``"DCGAN"``...).

    Returns
    -------
    dict
        ``{"tensors", "metadata", "train_state" (or None), "path"}``; the train state is
        loaded with ``weights_only=True``.

    Raises
    ------
    FileNotFoundError, CheckpointError
        Missing path; no complete checkpoint; another format; damaged files.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} checkpoint {path} does not exist")
    if path.is_dir() and not (path / METADATA_FILE).is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(
                f"{path} holds no complete {what} checkpoint ({CHECKPOINT_PREFIX}*/ with {METADATA_FILE})"
            )
        path = latest
    try:
        metadata = json.loads((path / METADATA_FILE).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path / METADATA_FILE} could not be read ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != format:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise CheckpointError(f"{path} is not a napari-scigen {what} checkpoint (format {found!r})")
    step = metadata.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(
            f"{path / METADATA_FILE}: 'step' must be a whole number >= 0, got {step!r} "
            "(a damaged or edited checkpoint): choose another checkpoint or start over"
        )
    state_path = path / TRAIN_STATE_FILE
    return {
        "tensors": _read_tensors(path / NETWORKS_FILE),
        "metadata": metadata,
        "train_state": _read_train_state(state_path) if state_path.is_file() else None,
        "path": path,
    }
