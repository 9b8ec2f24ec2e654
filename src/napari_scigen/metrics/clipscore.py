"""CLIPScore (Hessel et al., EMNLP 2021) with transformers' CLIPModel used directly.

``score = 100 * max(cos(image_embedding, text_embedding), 0)`` with the projected
CLIP embeddings. Scores from different CLIP models are not comparable, so the model
id (or path) is recorded with every result. torchmetrics' ``CLIPScore`` is not used:
with transformers 5, ``get_image_features`` returns a model-output object instead
of a tensor; both forms are handled here.

Single-channel slices are mapped to ``[0, 1]`` with a shared window (integer dtype
range by default, min-max for floats, or one you give), replicated to RGB and
passed to the model's own CLIP image processor (resize, centre crop, normalise).
CLIP was trained on photographs with captions; its notion of "a CT slice of
sandstone" is weak, so treat CLIPScore as a sanity check of prompt adherence, not
as a measure of scientific fidelity.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.models import MODEL_CACHE, ModelNotAvailableError, missing_hub_model_message
from ..core.validation import InvalidInputError, check_image
from .perceptual import lpips_window
from .weights import DEFAULT_CLIP_MODEL


@dataclass(frozen=True)
class ClipScoreResult:
    """CLIPScore per image, with the model that produced it."""

    values: tuple[float, ...]
    value: float
    model: str
    texts: tuple[str, ...]
    window: tuple[float, float]
    device: str

    @property
    def mean(self) -> float:
        """Alias of :attr:`value`."""
        return self.value

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly description."""
        return {
            "metric": "clipscore",
            "value": self.value,
            "per_slice": list(self.values),
            "model": self.model,
            "texts": list(self.texts),
            "window": list(self.window),
            "device": self.device,
        }


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "~", "/", "\\")) or os.path.isabs(model) or model.count("/") > 1


def _from_pretrained(loader, model: str):
    """Load from a directory or the HF cache first; go online only if allowed."""
    if Path(model).expanduser().is_dir():
        return loader.from_pretrained(str(Path(model).expanduser()))
    try:
        return loader.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError):
        if _hub_offline():
            raise
    return loader.from_pretrained(model)


def _load_clip(model: str, device: str):
    from transformers import CLIPModel, CLIPProcessor

    if _looks_like_path(model) and not Path(model).expanduser().is_dir():
        raise ModelNotAvailableError(
            f"CLIP model directory {model} does not exist; pass a folder saved with "
            f"save_pretrained() or a Hugging Face id such as {DEFAULT_CLIP_MODEL!r}"
        )
    try:
        clip = _from_pretrained(CLIPModel, model)
        processor = _from_pretrained(CLIPProcessor, model)
    except (OSError, ValueError) as error:
        raise ModelNotAvailableError(
            f"{missing_hub_model_message(model, 'CLIP')}\n(loader said: {error})"
        ) from error
    clip.eval().requires_grad_(False)
    return clip.to(device), processor


def load_clip(model: str = DEFAULT_CLIP_MODEL, *, device: str = "auto"):
    """The CLIP model and processor, cached in MODEL_CACHE.

    Parameters
    ----------
    model : str
        Hugging Face id or a local directory saved with ``save_pretrained`` (holding
        the model, tokenizer and image-processor files).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    Returns
    -------
    tuple
        ``(CLIPModel, CLIPProcessor)``.

    Raises
    ------
    ModelNotAvailableError
        If the model is neither a directory nor cached and cannot be downloaded.
    """
    from ..core.device import resolve_device

    resolved = resolve_device(device)
    return MODEL_CACHE.get(("clip", model, resolved), lambda: _load_clip(model, resolved))


def embedding_tensor(output):
    """The embedding tensor from ``get_*_features`` (tensor, or output object in transformers 5)."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled
    raise TypeError(
        f"cannot find embeddings in {type(output).__name__}; expected a tensor or pooler_output"
    )


def _rgb_unit_images(slices: np.ndarray, window: tuple[float, float]) -> list[np.ndarray]:
    low, high = window
    unit = np.clip((slices.astype(np.float64) - low) / (high - low), 0.0, 1.0).astype(np.float32)
    return [np.repeat(image[..., None], 3, axis=-1) for image in unit]


def clip_score(
    images,
    texts: str | Sequence[str],
    *,
    model: str = DEFAULT_CLIP_MODEL,
    window=None,
    device: str = "auto",
    batch_size: int = 16,
    cancel=None,
) -> ClipScoreResult:
    """CLIPScore of each slice against its text.

    Parameters
    ----------
    images : numpy.ndarray
        A 2D slice or a stack ``(N, Y, X)``.
    texts : str or sequence of str
        One text for all slices, or one per slice.
    model : str
        CLIP model id or local directory (recorded in the result).
    window : Window, (low, high) or None
        Intensity window mapped to ``[0, 1]``; default the dtype range (integers) or
        min-max (floats).
    device : str
        ``"auto"`` uses CUDA when available.
    batch_size : int
        Slices per forward pass.
    cancel : CancelToken, optional
        Checked between batches.

    Returns
    -------
    ClipScoreResult
        ``values`` in ``[0, 100]`` per slice and their mean.

    Raises
    ------
    ModelNotAvailableError
        If the CLIP model is not available offline.
    """
    import torch

    from ..core.progress import check_cancelled

    array = check_image(images, name="images")
    slices = array[np.newaxis] if array.ndim == 2 else array
    text_list = [texts] * slices.shape[0] if isinstance(texts, str) else list(texts)
    if len(text_list) != slices.shape[0]:
        raise InvalidInputError(
            f"got {len(text_list)} texts for {slices.shape[0]} slices; give one or one per slice"
        )
    if not all(isinstance(t, str) and t.strip() for t in text_list):
        raise InvalidInputError("every text must be a non-empty string")
    chosen_window = lpips_window(slices, window)
    clip, processor = load_clip(model, device=device)
    target = next(clip.parameters()).device
    values: list[float] = []
    with torch.inference_mode():
        for start in range(0, slices.shape[0], batch_size):
            check_cancelled(cancel)
            stop = min(start + batch_size, slices.shape[0])
            pixel_values = processor.image_processor(
                images=_rgb_unit_images(slices[start:stop], chosen_window),
                do_rescale=False,
                return_tensors="pt",
            )["pixel_values"].to(target)
            tokens = processor.tokenizer(
                text_list[start:stop], padding=True, truncation=True, return_tensors="pt"
            ).to(target)
            image_embedding = embedding_tensor(clip.get_image_features(pixel_values=pixel_values))
            text_embedding = embedding_tensor(
                clip.get_text_features(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                )
            )
            cosine = torch.nn.functional.cosine_similarity(
                image_embedding.float(), text_embedding.float(), dim=-1
            )
            values.extend(float(v) for v in (100.0 * cosine.clamp(min=0)).cpu())
    return ClipScoreResult(
        values=tuple(values),
        value=float(np.mean(values)),
        model=model,
        texts=tuple(dict.fromkeys(text_list)),
        window=chosen_window,
        device=str(target),
    )
