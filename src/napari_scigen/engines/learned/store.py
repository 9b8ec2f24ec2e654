"""Weights files and training checkpoints of the learned engines (no pickles).

* A **weights file** is ``name.safetensors`` + ``name.json`` (format
  :data:`FORMAT`, the :class:`~.networks.UNetConfig`, what it was trained on). The
  default networks shipped in ``napari_scigen/data`` are such files.
* A **checkpoint** is the checkpoint layout of every trainer
  (:func:`~napari_scigen.engines._training.checkpoint.save_tensors_checkpoint`):
  ``checkpoint-<step>/`` with ``networks.safetensors``, ``train_state.pt`` (optimizer
  states, read back with ``weights_only=True``) and ``checkpoint.json`` (written last,
  holding the RNG state and the *task key* that says which volume and settings it
  belongs to).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...core.validation import InvalidInputError

#: Format tag of weights files and checkpoints.
FORMAT = "napari-scigen-learned/1"
#: File name stems of the shipped default networks in ``napari_scigen/data``.
DEFAULT_WEIGHTS = {
    "interpolate": "learned_interpolate_default",
    "inpaint": "learned_inpaint_default",
}


def data_dir() -> Path:
    """``napari_scigen/data``."""
    return Path(__file__).resolve().parents[2] / "data"


def default_weights_path(task: str) -> Path:
    """Path of the shipped default weights of ``task`` (``interpolate`` or ``inpaint``)."""
    return data_dir() / f"{DEFAULT_WEIGHTS[task]}.safetensors"


def _prefixed(prefix: str, module) -> dict:
    return {
        f"{prefix}.{k}": v.detach().to("cpu").contiguous().clone()
        for k, v in module.state_dict().items()
    }


def _unprefixed(tensors: dict, prefix: str) -> dict:
    start = prefix + "."
    return {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}


def save_weights(network, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``network`` as ``path.safetensors`` + ``path.json`` (readable by everyone).

    Returns
    -------
    pathlib.Path
        The ``.safetensors`` path.
    """
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_prefixed("net", network), str(path), metadata={"format": FORMAT})
    record = dict(metadata, format=FORMAT, config=network.config.to_dict())
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True))
    os.chmod(path, 0o644)  # safetensors writes owner-only files; package data must be readable
    return path


def load_weights(path: str | os.PathLike):
    """Read a weights file (or a checkpoint folder: its newest checkpoint's network).

    Returns
    -------
    (ResidualUNet, dict)
        The network on the CPU and its JSON record.

    Raises
    ------
    InvalidInputError
        Missing or foreign files, damaged or NaN/infinite weights, or weights that do
        not fit the recorded architecture.
    """
    from safetensors.torch import load_file

    from .networks import UNetConfig, build_network

    path = Path(path).expanduser()
    if path.is_dir():
        loaded = load_checkpoint(path)
        tensors, record = loaded["tensors"], loaded["metadata"]
    else:
        json_path = path.with_suffix(".json")
        if not path.is_file():
            raise InvalidInputError(f"learned weights {path} do not exist")
        if not json_path.is_file():
            raise InvalidInputError(
                f"learned weights {path} have no {json_path.name} beside them (the file "
                "napari-scigen writes next to its .safetensors weights); pass a weights "
                "file saved by napari-scigen, or its checkpoint folder"
            )
        try:
            record = json.loads(json_path.read_text())
            tensors = load_file(str(path), device="cpu")
        except (OSError, ValueError) as error:
            raise InvalidInputError(f"{path} could not be read ({error})") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise InvalidInputError(f"{path} is not a napari-scigen learned-engine weights file")
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:  # a NaN network gives NaN or zero slices, or a silent fallback: refuse it
        raise InvalidInputError(
            f"{path} holds NaN/infinite weights ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}): the network is broken; use other "
            "weights or retrain"
        )
    try:
        config = UNetConfig.from_dict(record["config"])
        network = build_network(config)
        network.load_state_dict(_unprefixed(tensors, "net"), strict=True)
    except (KeyError, TypeError, RuntimeError) as error:
        first = str(error).splitlines()[0]
        raise InvalidInputError(
            f"{path}: weights do not fit their recorded network ({first})"
        ) from None
    return network, record


def save_checkpoint(
    run_dir, *, step: int, modules: dict, metadata: dict, train_state: dict, keep=2
):
    """Write a training checkpoint of ``modules`` (``{"net": network, ...}``) atomically."""
    from .._training.checkpoint import save_tensors_checkpoint

    tensors: dict = {}
    for prefix, module in modules.items():
        tensors.update(_prefixed(prefix, module))
    return save_tensors_checkpoint(
        run_dir,
        step=step,
        tensors=tensors,
        metadata=metadata,
        train_state=train_state,
        keep=keep,
        format=FORMAT,
    )


def latest(run_dir) -> Path | None:
    """The newest complete learned-engine checkpoint in ``run_dir`` (``None``: none)."""
    from .._training.checkpoint import list_checkpoints

    found = list_checkpoints(run_dir, FORMAT)
    return found[-1] if found else None


def load_checkpoint(path) -> dict[str, Any]:
    """``{"tensors", "metadata", "train_state", "path"}`` of a checkpoint (or a run folder).

    Raises
    ------
    InvalidInputError
        When the folder holds no complete learned-engine checkpoint or it is damaged.
    """
    from .._training.checkpoint import CheckpointError, load_tensors_checkpoint

    try:
        return load_tensors_checkpoint(path, format=FORMAT, what="learned-engine")
    except (CheckpointError, FileNotFoundError) as error:
        raise InvalidInputError(str(error)) from None


def load_into(module, tensors: dict, prefix: str) -> None:
    """Load the ``prefix.`` tensors of a checkpoint into ``module`` (strict)."""
    module.load_state_dict(_unprefixed(tensors, prefix), strict=True)


def initial_network(params, task: str, in_channels: int):
    """The network training starts from, and where its weights came from.

    ``params.init_weights`` (a file or checkpoint folder) wins over ``params.init``;
    ``init="default"`` loads the shipped default of ``task``; ``"scratch"`` draws random
    weights from ``params.seed``.

    Raises
    ------
    InvalidInputError
        Weights that do not exist, are damaged or expect another number of inputs.
    """
    from .networks import UNetConfig, build_network

    if params.init_weights is None and params.init == "scratch":
        config = UNetConfig(in_channels=in_channels, base_channels=params.base_channels)
        return build_network(config, seed=params.seed), {"init": "scratch", "seed": params.seed}
    path = Path(params.init_weights) if params.init_weights else default_weights_path(task)
    if params.init_weights is None and not path.is_file():
        raise InvalidInputError(
            f"the shipped default weights {path.name} are missing from this installation; "
            "reinstall napari-scigen or run with init='scratch'",
            options=["init"],
        )
    network, record = load_weights(path)
    if network.config.in_channels != in_channels:
        raise InvalidInputError(
            f"{path} expects {network.config.in_channels} input channels, this job gives "
            f"{in_channels}: the weights belong to another engine or setting"
        )
    return network, {
        "init": "file" if params.init_weights else "default",
        "weights": str(path),
        "trained_on": record.get("trained_on"),
    }
