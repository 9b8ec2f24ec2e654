"""What a training run continues from, and the refusal to continue on other data.

Every trainer records the training volume's layout and content identity
(:func:`~napari_scigen.core.io.identity.array_identity`) in its checkpoints
(:func:`source_record`); a run resumes the newest checkpoint of its folder
(:func:`resume_point`) only when it is given the same volume again
(:func:`check_resume_source`), with the optimizer state it saved and the learning rate
it is given now (:func:`restore_optimizer`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.validation import InvalidInputError, check_image
from .checkpoint import checkpoint_format, list_checkpoints


@dataclass(frozen=True)
class ResumePoint:
    """Where a run in a folder starts.

    Attributes
    ----------
    checkpoint : pathlib.Path or None
        The newest checkpoint to continue from (``None``: start from scratch).
    replaced : list of pathlib.Path
        The checkpoints of an earlier run that a run started over (``resume=False``)
        replaces once it writes its own.
    """

    checkpoint: Path | None = None
    replaced: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        """The resumed checkpoint's folder name (recorded in provenance), or ``None``."""
        return self.checkpoint.name if self.checkpoint is not None else None


def refuse_other_checkpoints(
    out_dir: str | os.PathLike,
    *,
    format: str,  # noqa: A002 - the word of the JSON files
    what: str,
) -> None:
    """Refuse a folder holding another trainer's checkpoints (resumed or not).

    A run never resumes, replaces or prunes checkpoints of another format, and never
    writes its own among them (the newest checkpoint of a folder would then be of
    mixed trainers).

    Parameters
    ----------
    out_dir : path
        The run's output folder.
    format : str
        The run's checkpoint format tag.
    what : str
        The trainer, for the message (``"DCGAN"``...).

    Raises
    ------
    InvalidInputError
        When ``out_dir`` holds a complete checkpoint of another (or no readable) format.
    """
    others = [p for p in list_checkpoints(out_dir) if checkpoint_format(p) != format]
    if not others:
        return
    found = sorted({str(checkpoint_format(p)) for p in others})
    raise InvalidInputError(
        f"{out_dir} holds {len(others)} checkpoint(s) of another trainer ({others[-1].name}, "
        f"format {', '.join(found)}), not {what} ones: choose another output folder "
        "(resume=True and resume=False alike leave another trainer's checkpoints alone)",
        options=["resume"],
    )


def resume_point(
    out_dir: str | os.PathLike,
    resume: bool,
    *,
    format: str,  # noqa: A002 - the word of the JSON files
    what: str,
) -> ResumePoint:
    """The newest checkpoint in ``out_dir`` when ``resume``, else the ones a new run replaces.

    Only checkpoints of the run's own ``format`` are considered; a folder holding
    another trainer's checkpoints is refused (:func:`refuse_other_checkpoints`).
    """
    refuse_other_checkpoints(out_dir, format=format, what=what)
    own = list_checkpoints(out_dir, format)
    if resume:
        return ResumePoint(checkpoint=own[-1] if own else None)
    return ResumePoint(replaced=own)


def restore_optimizer(optimizer, state: dict[str, Any], learning_rate: float) -> None:
    """Load a checkpoint's optimizer ``state``, running on at the given ``learning_rate``.

    A resumed run may be given another learning rate (after a divergence, say): the
    saved moments are kept, the saved rate is not.
    """
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


def training_volume(volume) -> tuple[np.ndarray, str]:
    """The checked ``(Z, Y, X)`` training volume and its content identity.

    Raises
    ------
    InvalidInputError
        Not a 3-D grayscale volume napari-scigen can train on.
    """
    from ...core.io.identity import array_identity

    array = check_image(volume, name="training volume", ndim=(3,))
    return array, array_identity(array)


def source_record(array: np.ndarray, identity: str) -> dict[str, Any]:
    """The ``source`` entry of a checkpoint: shape, dtype and content identity."""
    return {"shape": list(array.shape), "dtype": array.dtype.name, "content": identity}


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
        "resume, another output folder, or resume=False to start over",
        options=["resume"],
    )
