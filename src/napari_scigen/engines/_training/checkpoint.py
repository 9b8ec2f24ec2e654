"""The checkpoint layout of every napari-scigen trainer, without pickles.

A training checkpoint is a directory ``<run_dir>/checkpoint-0001234/`` holding

* ``networks.safetensors``: the trained tensors (prefixed by network: ``G.``, ``D.``...);
* ``train_state.pt``: optimizer and RNG states, a plain dict of tensors and numbers
  written with :func:`torch.save` and read back with ``weights_only=True``;
* ``checkpoint.json``: the trainer's metadata plus ``format`` and ``step``. It is
  written last, so a directory without it is incomplete.

A directory is written under a temporary name and renamed when complete, so a
checkpoint interrupted half-way never shadows the previous one. Each trainer names its
own ``format`` tag (StyleGAN, DCGAN, LoRA fine-tuning, learned engines).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

CHECKPOINT_PREFIX = "checkpoint-"
NETWORKS_FILE = "networks.safetensors"
TRAIN_STATE_FILE = "train_state.pt"
METADATA_FILE = "checkpoint.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, damaged or does not match what was asked for."""


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint taken after ``step`` steps."""
    return f"{CHECKPOINT_PREFIX}{int(step):07d}"


def checkpoint_format(path: str | os.PathLike) -> str | None:
    """The ``format`` tag a checkpoint's JSON records (``None``: unreadable or untagged)."""
    try:
        record = json.loads((Path(path) / METADATA_FILE).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    found = record.get("format") if isinstance(record, dict) else None
    return found if isinstance(found, str) else None


def list_checkpoints(
    run_dir: str | os.PathLike,
    format: str | None = None,  # noqa: A002 - the word of the JSON files
) -> list[Path]:
    """Complete checkpoints in ``run_dir``, oldest first (only those of ``format`` if given)."""
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
        and (format is None or checkpoint_format(p) == format)
    ]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory in ``run_dir``, or ``None``."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(
    run_dir: str | os.PathLike,
    *,
    keep: int | None,
    replaces: list[Path] | tuple[Path, ...] = (),
    newest: Path | None = None,
    format: str | None = None,  # noqa: A002 - the word of the JSON files
) -> None:
    """Remove the checkpoints a run no longer needs.

    Only checkpoints of the run's own ``format`` are ever counted or removed (another
    trainer's checkpoints in the folder are left alone).

    Parameters
    ----------
    run_dir : path
        Training output directory.
    keep : int, optional
        Keep only the newest ``keep`` checkpoints (``None`` or 0 keeps all).
    replaces : sequence of pathlib.Path
        Checkpoints of an earlier run that a started-over run replaces (all but ``newest``
        are removed).
    newest : pathlib.Path, optional
        The checkpoint just written (never removed as replaced).
    format : str, optional
        The run's format tag: only its checkpoints are pruned or replaced (``None``: all).
    """
    for old in replaces:
        if Path(old) != newest and (format is None or checkpoint_format(old) == format):
            shutil.rmtree(old, ignore_errors=True)
    if keep is not None and keep > 0:
        for old in list_checkpoints(run_dir, format)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def save_tensors_checkpoint(
    run_dir: str | os.PathLike,
    *,
    step: int,
    tensors: dict[str, Any],
    metadata: dict[str, Any],
    format: str,  # noqa: A002 - the word of the JSON files
    train_state: dict[str, Any] | None = None,
    keep: int | None = 2,
    replaces: list[Path] | tuple[Path, ...] = (),
) -> Path:
    """Write ``checkpoint-<step>/`` (tensors, train state, JSON) into ``run_dir`` atomically.

    Parameters
    ----------
    run_dir : path
        Training output directory (created).
    step : int
        Steps done; names the checkpoint directory.
    tensors : dict of str to torch.Tensor
        Written to ``networks.safetensors``.
    metadata : dict
        JSON-serialisable description; ``format`` and ``step`` are added.
    format : str
        The trainer's format tag (also in the safetensors header).
    train_state : dict, optional
        Optimizer and RNG states (tensors, numbers, lists, dicts only), written to
        ``train_state.pt`` and read back with ``weights_only=True``.
    keep : int, optional
        Keep only the newest ``keep`` checkpoints (``None`` keeps all).
    replaces : sequence of pathlib.Path
        The checkpoints of an earlier run in ``run_dir`` that a run started over
        replaces; they are removed once this one is written (so the newest checkpoint is
        always this run's).

    Returns
    -------
    pathlib.Path
        The checkpoint directory.
    """
    import torch
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
    prune_checkpoints(run_dir, keep=keep, replaces=replaces, newest=final, format=format)
    return final


def read_tensors(path: Path) -> dict[str, Any]:
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


def read_train_state(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; a file holding anything else is refused, never run."""
    import pickle
    import warnings

    import torch

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


def checkpoint_dir(path: str | os.PathLike, *, what: str) -> Path:
    """``path`` if it is a checkpoint directory, else the newest checkpoint in it.

    Raises
    ------
    FileNotFoundError, CheckpointError
        A missing path; a folder with no complete checkpoint.
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
        return latest
    return path


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
    path = checkpoint_dir(path, what=what)
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
        "tensors": read_tensors(path / NETWORKS_FILE),
        "metadata": metadata,
        "train_state": read_train_state(state_path) if state_path.is_file() else None,
        "path": path,
    }
