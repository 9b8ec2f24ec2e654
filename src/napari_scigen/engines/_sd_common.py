"""Shared machinery of the Stable Diffusion engines (DiffEdit, ControlNet).

What lives here, so the two engines do not duplicate it:

- **model location and loading**: a local directory or a hub id, the Hugging Face
  cache, ``local_files_only``/offline handling that fails with a short
  :class:`~napari_scigen.core.models.ModelNotAvailableError` before anything is
  downloaded or written, and the process-wide model cache;
- **microCT <-> model conversion**: one intensity :class:`~napari_scigen.core.stack.Window`
  per run, grayscale replicated to RGB, model RGB back to grayscale;
- **geometry**: reflect-padding of slices smaller than the model resolution, model-size
  crops around the mask (never a downscaled slice), latent-resolution masks that never
  miss a masked pixel, and the final feathered composite that keeps every pixel outside
  the mask bit-identical to the input;
- **batching and determinism**: one ``torch.Generator`` per slice (and variant), seeded
  ``seed + z (+ VARIANT_SEED_STRIDE * variant)``, passed to diffusers as a list so a
  slice's result does not depend on the batch it runs in;
- **progress and cancellation**: a diffusers call runs in a worker thread and its
  per-step callbacks are relayed to the engine generator, which yields them as
  :class:`~napari_scigen.core.progress.Progress`.

torch, diffusers and huggingface_hub are imported lazily inside functions.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..core.models import (
    MODEL_CACHE,
    ModelNotAvailableError,
    hf_hub_cache,
    missing_hub_model_message,
)
from ..core.progress import Cancelled, CancelToken, Progress
from ..core.stack import Window, percentile_window
from ..core.validation import InvalidInputError

T = TypeVar("T")

#: Default Stable Diffusion base model (SD 1.5 community mirror; the runwayml id was removed).
DEFAULT_SD_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
#: What the models are called in user-facing messages.
SD_WHAT = "Stable Diffusion"
#: Seed offset between variants of one slice: seed(z, v) = seed + z + VARIANT_SEED_STRIDE * v.
VARIANT_SEED_STRIDE = 1_000_003
#: Smallest core (mask area covered by one crop) a resolution/context pair may leave.
MIN_CORE = 8

# --------------------------------------------------------------------------------------
# Parameter checks shared by the params dataclasses
# --------------------------------------------------------------------------------------


def max_context(resolution: int) -> int:
    """The largest ``context`` (px) that leaves a usable core in a ``resolution`` crop."""
    return (int(resolution) - MIN_CORE) // 2


def check_common_params(
    *,
    steps: int,
    guidance_scale: float,
    resolution: int,
    context: int,
    feather: float,
    batch_size: int,
    window_percentiles: tuple[float, float],
    strength: float = 1.0,
) -> None:
    """Validate the parameters both SD engines share.

    ``strength`` (the fraction of ``steps`` run) must be in ``(0, 1]`` and leave at
    least one step.

    Raises
    ------
    InvalidInputError
        With the offending value and the accepted range.
    """
    if int(steps) < 1:
        raise InvalidInputError(f"steps must be >= 1, got {steps}")
    if guidance_scale < 0:
        raise InvalidInputError(f"guidance_scale must be >= 0, got {guidance_scale}")
    if resolution < 16 or resolution % 8:
        raise InvalidInputError(
            f"resolution must be a multiple of 8 and >= 16 (512 for SD 1.5/2.x-base), got {resolution}"
        )
    if not 0 <= context <= max_context(resolution):
        raise InvalidInputError(
            f"context {context} leaves no room in a {resolution}px crop: need "
            f"0 <= context <= {max_context(resolution)}"
        )
    if feather < 0:
        raise InvalidInputError(f"feather must be >= 0 pixels, got {feather}")
    if int(batch_size) < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
    low, high = window_percentiles
    if not 0 <= low < high <= 100:
        raise InvalidInputError(
            f"window_percentiles must satisfy 0 <= low < high <= 100, got {window_percentiles}"
        )
    if not 0 < strength <= 1:
        raise InvalidInputError(f"strength must be in (0, 1], got {strength}")
    if int(steps * strength) < 1:
        raise InvalidInputError(
            f"steps * strength = {steps} * {strength} runs no step; raise either"
        )


def check_prompt(prompt: str, name: str, hint: str) -> None:
    """Raise :class:`InvalidInputError` when a required prompt is empty."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInputError(f"{name} is empty: {hint}")


# --------------------------------------------------------------------------------------
# Slices, seeds and generators
# --------------------------------------------------------------------------------------


def select_slices(image: np.ndarray, slices: Any) -> list[int]:
    """Turn a slice selection into a sorted list of z indices.

    Parameters
    ----------
    image : numpy.ndarray
        A 2D slice (only ``None`` or ``[0]`` accepted) or a 3D volume.
    slices : None, int, slice, range or sequence of int
        ``None`` selects every slice.

    Returns
    -------
    list of int

    Raises
    ------
    InvalidInputError
        For indices outside the volume or an empty selection.
    """
    depth = 1 if image.ndim == 2 else image.shape[0]
    if slices is None:
        return list(range(depth))
    if isinstance(slices, slice):
        chosen = list(range(depth))[slices]
    elif isinstance(slices, (int, np.integer)):
        chosen = [int(slices)]
    else:
        chosen = [int(z) for z in slices]
    bad = [z for z in chosen if not 0 <= z < depth]
    if bad:
        raise InvalidInputError(
            f"slice index(es) {bad} outside the {'slice' if image.ndim == 2 else 'volume'} "
            f"(valid: 0..{depth - 1})"
        )
    if not chosen:
        raise InvalidInputError(f"the slice selection {slices!r} is empty")
    return sorted(set(chosen))


def slice_of(array: np.ndarray, z: int) -> np.ndarray:
    """Slice ``z`` of a volume, or the array itself when it is a 2D slice."""
    return array if array.ndim == 2 else array[z]


def slice_seed(seed: int, z: int, variant: int = 0) -> int:
    """The seed of slice ``z`` (and variant): ``seed + z + VARIANT_SEED_STRIDE * variant``."""
    return int(seed) + int(z) + VARIANT_SEED_STRIDE * int(variant)


def make_generator(seed: int):
    """A CPU ``torch.Generator`` seeded with ``seed`` (CPU so noise is the same on every device)."""
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed))


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """Split ``items`` into consecutive lists of at most ``size`` elements."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# --------------------------------------------------------------------------------------
# Model location, offline errors and loading
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """Where a model will be loaded from.

    Parameters
    ----------
    requested : str
        What the user asked for (hub id or path).
    location : str
        The resolved local directory, or the hub id.
    is_local : bool
        ``True`` for a local directory.
    cached : bool
        For a hub id: whether its index file is in the Hugging Face cache.
    offline : bool
        Whether downloads are forbidden (``local_files_only`` or ``HF_HUB_OFFLINE``).
    """

    requested: str
    location: str
    is_local: bool
    cached: bool = False
    offline: bool = False


def hub_offline() -> bool:
    """Whether Hugging Face downloads are disabled (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``)."""
    truthy = {"1", "on", "yes", "true"}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in truthy:
            return True
    return False


def _looks_like_path(model: str) -> bool:
    return (
        model.startswith(("/", "./", "../", "~", "."))
        or "\\" in model
        or model.count("/") > 1
        or (len(model) > 1 and model[1] == ":")
    )


def _in_hub_cache(repo_id: str, filename: str) -> bool:
    """Whether ``filename`` of ``repo_id`` is in the HF cache (reads only, writes nothing)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with diffusers
        return False
    try:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hf_hub_cache()))
    except Exception:  # invalid repo id etc.: treat as not cached
        return False
    return isinstance(found, str)


def locate_model(model: str, *, what: str, index_file: str, local_files_only: bool) -> ModelSource:
    """Decide where ``model`` comes from, failing early when it cannot be had.

    Parameters
    ----------
    model : str
        A local directory written by ``save_pretrained``/a hub snapshot, or a hub id.
    what : str
        Model family for messages, e.g. ``"Stable Diffusion"`` or ``"ControlNet"``.
    index_file : str
        The file that identifies the model (``model_index.json`` for pipelines,
        ``config.json`` for single models).
    local_files_only : bool
        Never download.

    Returns
    -------
    ModelSource

    Raises
    ------
    ModelNotAvailableError
        For a missing/incomplete local directory, or a hub id that is not cached while
        downloads are disabled. Nothing is written before raising.
    """
    if not isinstance(model, str) or not model.strip():
        raise ModelNotAvailableError(f"no {what} model given: pass a hub id or a local directory")
    model = model.strip()
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / index_file).is_file():
            raise ModelNotAvailableError(
                f"{what} model directory {str(path)!r} has no {index_file}: pass a folder written by "
                "save_pretrained() or a downloaded hub snapshot"
            )
        return ModelSource(model, str(path.resolve()), True, cached=True, offline=True)
    if _looks_like_path(model):
        raise ModelNotAvailableError(f"{what} model directory {model!r} does not exist")
    offline = bool(local_files_only) or hub_offline()
    cached = _in_hub_cache(model, index_file)
    if offline and not cached:
        raise ModelNotAvailableError(missing_hub_model_message(model, what))
    return ModelSource(model, model, False, cached=cached, offline=offline)


_UNAVAILABLE_ERROR_NAMES = {
    "LocalEntryNotFoundError",
    "OfflineModeIsEnabled",
    "RepositoryNotFoundError",
    "RevisionNotFoundError",
    "EntryNotFoundError",
    "RemoteEntryNotFoundError",
    "GatedRepoError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionError",
    "ReadTimeout",
    "Timeout",
    "TimeoutException",
    "IncompleteSnapshotError",
}
_UNAVAILABLE_PHRASES = (
    "couldn't connect",
    "could not connect",
    "offline",
    "local_files_only",
    "not found in",
    "does not appear to have",
    "cannot find the requested files",
    "connection",
)


def _is_unavailable_error(error: BaseException) -> bool:
    """Whether ``error`` (or its cause chain) means 'model files missing / no network'."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 10:
        names = {cls.__name__ for cls in type(current).__mro__}
        if names & _UNAVAILABLE_ERROR_NAMES:
            return True
        if isinstance(current, OSError):
            text = str(current).lower()
            if any(phrase in text for phrase in _UNAVAILABLE_PHRASES):
                return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return (text[:limit] + "...") if len(text) > limit else text


def load_from_source(
    source: ModelSource, load: Callable[[str, dict[str, Any]], T], *, what: str
) -> T:
    """Call ``load(location, kwargs)`` with the right offline flags, translating errors.

    ``kwargs`` holds ``local_files_only`` and ``cache_dir`` for ``from_pretrained``.
    A cached hub model is tried offline first (no network round trip on beamline
    machines), then online unless downloads are disabled.

    Raises
    ------
    ModelNotAvailableError
        Short message, no chained traceback, when files are missing or unreachable.
    """
    cache_dir = str(hf_hub_cache())
    if source.is_local:
        try:
            return load(source.location, {"local_files_only": True})
        except OSError as error:
            raise ModelNotAvailableError(
                f"{what} model directory {source.location!r} could not be loaded: {_one_line(error)}"
            ) from None
    attempts = [True] if source.offline else ([True, False] if source.cached else [False])
    last_error: BaseException | None = None
    for local_only in attempts:
        try:
            return load(source.location, {"local_files_only": local_only, "cache_dir": cache_dir})
        except Exception as error:
            if not _is_unavailable_error(error):
                raise
            last_error = error
    message = missing_hub_model_message(source.requested, what)
    if last_error is not None:
        message += f"\n(reason: {_one_line(last_error)})"
    raise ModelNotAvailableError(message) from None


def _dtype_keyword() -> str:
    """``dtype`` on diffusers versions that renamed it, ``torch_dtype`` on older ones."""
    try:
        from diffusers.utils import deprecation_utils
    except ImportError:  # pragma: no cover - older diffusers layout
        return "torch_dtype"
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def pretrained_kwargs(dtype) -> dict[str, Any]:
    """Keyword arguments every ``from_pretrained`` call here shares."""
    return {
        _dtype_keyword(): dtype,
        "low_cpu_mem_usage": importlib.util.find_spec("accelerate") is not None,
    }


def cached_model(key: tuple, loader: Callable[[], T]) -> T:
    """Return the model for ``key`` from :data:`~napari_scigen.core.models.MODEL_CACHE`."""
    return MODEL_CACHE.get(key, loader)


def scheduler_from(cls, config):
    """``cls.from_config(config)`` keeping only the options ``cls`` accepts (no log noise)."""
    accepted = set(inspect.signature(cls.__init__).parameters)
    return cls.from_config({key: value for key, value in dict(config).items() if key in accepted})


def fresh_pipeline(cached, **overrides):
    """A new pipeline object sharing the cached one's modules, with some components replaced.

    Runs never mutate the cached pipeline (schedulers, progress bars, interrupt flags).
    """
    components = dict(cached.components)
    components.update(overrides)
    if "requires_safety_checker" in inspect.signature(type(cached).__init__).parameters:
        components["requires_safety_checker"] = False
    pipe = type(cached)(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------------------
# Intensity: microCT <-> model
# --------------------------------------------------------------------------------------


def run_window(image: np.ndarray, percentiles: tuple[float, float]) -> Window:
    """The intensity window of a run: percentiles of the whole image (recorded in provenance).

    Computed over every slice, not only the processed ones, so a slice gives the same
    result whichever other slices are selected with it.
    """
    return percentile_window(image, float(percentiles[0]), float(percentiles[1]))


def gray_to_rgb(units: np.ndarray) -> np.ndarray:
    """``(B, H, W)`` values in [0, 1] -> ``(B, H, W, 3)`` float32 (channel replicated)."""
    units = np.asarray(units, dtype=np.float32)
    return np.repeat(units[..., None], 3, axis=-1)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` model output in [0, 1] -> grayscale (mean of channels), float32."""
    return np.asarray(rgb, dtype=np.float32)[..., :3].mean(axis=-1)


# --------------------------------------------------------------------------------------
# Masks and composites
# --------------------------------------------------------------------------------------


def latent_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """Downsample a pixel mask to latent resolution by max-pooling (no masked pixel missed).

    Parameters
    ----------
    mask : numpy.ndarray
        ``(..., H, W)`` boolean mask; ``H`` and ``W`` must be multiples of ``factor``.
    factor : int
        The VAE scale factor (8 for Stable Diffusion).

    Returns
    -------
    numpy.ndarray
        ``(..., H/factor, W/factor)`` float32 in {0, 1}: a latent cell is 1 when any
        pixel of its ``factor x factor`` block is masked.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(
            f"mask shape {mask.shape[-2:]} is not a multiple of the latent factor {factor}"
        )
    blocks = mask.reshape(*mask.shape[:-2], height // factor, factor, width // factor, factor)
    return blocks.any(axis=(-3, -1)).astype(np.float32)


def upsample_latent_mask(latent: np.ndarray, factor: int) -> np.ndarray:
    """Latent-resolution mask -> pixel resolution (each cell becomes a ``factor`` block), bool."""
    latent = np.asarray(latent) > 0.5
    return np.repeat(np.repeat(latent, factor, axis=-2), factor, axis=-1)


def block_dilate(mask: np.ndarray, factor: int) -> np.ndarray:
    """Grow a pixel mask to whole latent blocks (what the model can actually change)."""
    return upsample_latent_mask(latent_mask(mask, factor), factor)


def feather_weights(mask: np.ndarray, feather: float) -> np.ndarray:
    """Blend weights: 0 outside the mask, ramping to 1 over ``feather`` pixels inside it.

    Parameters
    ----------
    mask : numpy.ndarray
        2D boolean mask.
    feather : float
        Width of the ramp in pixels; ``0`` gives a hard edge.

    Returns
    -------
    numpy.ndarray
        float64 weights in [0, 1]; exactly 0 wherever ``mask`` is False.
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if feather <= 0 or not mask.any():
        return mask.astype(np.float64)
    distance = ndimage.distance_transform_edt(mask)
    weights = np.clip(distance / float(feather), 0.0, 1.0)
    weights[~mask] = 0.0
    return weights


def composite(original: np.ndarray, generated: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Blend ``generated`` into ``original`` with ``weights``; where weight is 0, copy bits.

    Parameters
    ----------
    original, generated : numpy.ndarray
        2D slices of the same shape and dtype.
    weights : numpy.ndarray
        From :func:`feather_weights`.

    Returns
    -------
    numpy.ndarray
        New array of ``original``'s dtype; pixels with weight 0 are bit-identical copies.
    """
    out = np.array(original, copy=True)
    inside = weights > 0
    if not inside.any():
        return out
    w = weights[inside]
    blend = (
        original[inside].astype(np.float64) * (1.0 - w) + generated[inside].astype(np.float64) * w
    )
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        blend = np.clip(np.rint(blend), info.min, info.max)
    out[inside] = blend.astype(out.dtype)
    return out


# --------------------------------------------------------------------------------------
# Geometry: padding and crops
# --------------------------------------------------------------------------------------


def pad_widths(
    shape: tuple[int, int], minimum: int, multiple: int = 8
) -> tuple[tuple[int, int], ...]:
    """Centered padding that makes each side ``>= minimum`` and a multiple of ``multiple``."""
    widths = []
    for size in shape:
        target = max(int(minimum), int(math.ceil(size / multiple) * multiple))
        extra = target - size
        widths.append((extra // 2, extra - extra // 2))
    return tuple(widths)


def reflect_pad(array: np.ndarray, widths) -> np.ndarray:
    """Reflect-pad a 2D array (numpy repeats the reflection for pads wider than the array)."""
    if not any(a or b for a, b in widths):
        return np.array(array, copy=True)
    if min(array.shape) < 2:
        return np.pad(array, widths, mode="edge")
    return np.pad(array, widths, mode="reflect")


def unpad(array: np.ndarray, widths) -> np.ndarray:
    """Undo :func:`pad_widths` padding on the last two axes."""
    (top, bottom), (left, right) = widths
    height, width = array.shape[-2:]
    return array[..., top : height - bottom, left : width - right]


@dataclass(frozen=True)
class Crop:
    """A model-size window of a (padded) slice and the part of the mask it owns.

    Parameters
    ----------
    top, left : int
        Corner of the window in padded-slice coordinates.
    size : int
        Window side (the model resolution).
    core : tuple of int
        ``(y0, y1, x0, x1)``, the padded-slice region whose masked pixels this crop
        generates; neighbouring cores do not overlap.
    """

    top: int
    left: int
    size: int
    core: tuple[int, int, int, int]

    @property
    def window(self) -> tuple[slice, slice]:
        """Index expression selecting the crop from the padded slice."""
        return (slice(self.top, self.top + self.size), slice(self.left, self.left + self.size))


def plan_crops(mask: np.ndarray, resolution: int, context: int) -> list[Crop]:
    """Cover every masked pixel with model-size crops, each keeping ``context`` pixels around its core.

    The mask's bounding box is split into equal cores no larger than
    ``resolution - 2 * context``; each core sits centred in a ``resolution`` window
    (shifted to stay inside the slice). Cores without masked pixels are skipped.

    Parameters
    ----------
    mask : numpy.ndarray
        2D boolean mask of a slice already padded to at least ``resolution``.
    resolution : int
        Crop side in pixels.
    context : int
        Unmasked surroundings kept on each side of a core (where the slice allows).

    Returns
    -------
    list of Crop
        Row-major order; empty for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    if height < resolution or width < resolution:
        raise ValueError(f"slice {mask.shape} must be padded to at least {resolution} first")
    if not mask.any():
        return []
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    max_core = resolution - 2 * context

    def split(start: int, stop: int) -> list[tuple[int, int]]:
        count = max(1, math.ceil((stop - start) / max_core))
        step = math.ceil((stop - start) / count)
        return [(a, min(stop, a + step)) for a in range(start, stop, step)]

    def place(start: int, stop: int, limit: int) -> int:
        centre = (start + stop) // 2
        return int(min(max(centre - resolution // 2, 0), limit - resolution))

    crops = []
    for cy0, cy1 in split(y0, y1):
        for cx0, cx1 in split(x0, x1):
            if not mask[cy0:cy1, cx0:cx1].any():
                continue
            crops.append(
                Crop(
                    place(cy0, cy1, height),
                    place(cx0, cx1, width),
                    resolution,
                    (cy0, cy1, cx0, cx1),
                )
            )
    return crops


def grid_crops(shape: tuple[int, int], resolution: int) -> list[Crop]:
    """Crops tiling a whole (padded) slice: every pixel belongs to exactly one core."""
    return plan_crops(np.ones(shape, dtype=bool), resolution, 0)


@dataclass
class SliceCanvas:
    """The working state of one slice (or one variant of it) in a masked edit.

    Holds the padded slice in model units, the padded mask, its crops and the
    slice's random generator. Crops are generated in order, each seeing the
    previous crops' results as context.

    Parameters
    ----------
    z : int
        Slice index in the volume (0 for a 2D image).
    variant : int
        Variant index (0 unless several variants are generated).
    seed : int
        Seed of this slice/variant.
    unit : numpy.ndarray
        Padded slice in [0, 1] (float32), updated as crops are pasted.
    mask : numpy.ndarray
        Padded boolean mask.
    pads : tuple
        Padding applied, for :func:`unpad`.
    crops : list of Crop
        Crops to generate, in order.
    generator : torch.Generator
        This slice's generator (consumed across its crops).
    """

    z: int
    variant: int
    seed: int
    unit: np.ndarray
    mask: np.ndarray
    pads: tuple
    crops: list[Crop]
    generator: Any = None

    @classmethod
    def create(
        cls,
        z: int,
        slice_data: np.ndarray,
        slice_mask: np.ndarray,
        window: Window,
        *,
        resolution: int,
        context: int,
        seed: int,
        variant: int = 0,
        whole_slice: bool = False,
    ) -> SliceCanvas:
        """Pad a slice and its mask and plan its crops (``whole_slice`` tiles it all)."""
        pads = pad_widths(slice_data.shape, resolution)
        unit = reflect_pad(window.to_unit(slice_data), pads)
        mask = np.pad(np.asarray(slice_mask, dtype=bool), pads, mode="constant")
        crops = (
            grid_crops(unit.shape, resolution)
            if whole_slice
            else plan_crops(mask, resolution, context)
        )
        return cls(z, variant, seed, unit, mask, pads, crops, make_generator(seed))

    def crop_input(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Model-unit image and edit mask (core ∩ mask) of crop ``index``."""
        crop = self.crops[index]
        unit = self.unit[crop.window].copy()
        owned = np.zeros_like(self.mask)
        cy0, cy1, cx0, cx1 = crop.core
        owned[cy0:cy1, cx0:cx1] = self.mask[cy0:cy1, cx0:cx1]
        return unit, owned[crop.window]

    def paste(self, index: int, generated: np.ndarray, edit_mask: np.ndarray) -> None:
        """Write a crop's generated unit values where its edit mask is set."""
        region = self.unit[self.crops[index].window]
        region[edit_mask] = np.clip(generated[edit_mask], 0.0, 1.0)

    def result_unit(self) -> np.ndarray:
        """The slice (unpadded) in model units."""
        return unpad(self.unit, self.pads)

    def crops_in_slice_coordinates(self) -> list[list[int]]:
        """Crop windows as ``[y0, x0, y1, x1]`` in slice coordinates (negative where padded)."""
        top, left = self.pads[0][0], self.pads[1][0]
        return [
            [c.top - top, c.left - left, c.top - top + c.size, c.left - left + c.size]
            for c in self.crops
        ]


def batch_rounds(
    canvases: Sequence[SliceCanvas], batch_size: int
) -> list[list[tuple[SliceCanvas, int]]]:
    """Group ``(canvas, crop index)`` items into pipeline calls of at most ``batch_size``.

    Canvases are taken ``batch_size`` at a time; within such a group, round ``k``
    processes crop ``k`` of every canvas that has one, so a slice's crops run in order.
    """
    rounds = []
    for group in chunked(list(canvases), batch_size):
        most = max((len(c.crops) for c in group), default=0)
        for k in range(most):
            items = [(c, k) for c in group if k < len(c.crops)]
            if items:
                rounds.append(items)
    return rounds


def finish_slice(
    original: np.ndarray, mask: np.ndarray, unit: np.ndarray, window: Window, feather: float
) -> np.ndarray:
    """Map a slice back to the data's dtype/range and composite it into the original.

    Pixels outside ``mask`` are bit-identical to ``original``; inside, the result is
    feathered over ``feather`` pixels from the mask edge.
    """
    generated = window.from_unit(unit)
    return composite(original, generated, feather_weights(mask, feather))


#: 2D ``linear`` inputs with at most this many rows are computed row by row on CPU.
SMALL_LINEAR_ROWS = 256


def _rowwise_small_linear_mode():
    """A torch function mode computing small 2D ``F.linear`` calls one row at a time."""
    import torch
    import torch.nn.functional as functional
    from torch.overrides import TorchFunctionMode

    class RowwiseSmallLinear(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is functional.linear and args and isinstance(args[0], torch.Tensor):
                rows = args[0]
                if rows.dim() == 2 and 1 < rows.shape[0] <= SMALL_LINEAR_ROWS:
                    weight = args[1] if len(args) > 1 else kwargs["weight"]
                    bias = args[2] if len(args) > 2 else kwargs.get("bias")
                    return torch.cat(
                        [functional.linear(row, weight, bias) for row in rows.split(1)]
                    )
            return func(*args, **kwargs)

    return RowwiseSmallLinear()


@contextmanager
def batch_invariant_numerics(device: str):
    """Make a slice's numbers independent of the batch it runs in (CPU only).

    Measured here (torch 2.14 CPU, MKL + oneDNN), a slice's UNet output changed by
    1e-7..1e-6 with the batch it ran in, enough to flip the last bit of some
    uint16 results. Two causes, both fixed inside this block:

    - oneDNN (mkldnn) chooses convolution algorithms by input shape, batch included:
      it is disabled, so PyTorch's native, batch-invariant convolutions run
      (about 1.4x slower on SD-sized convolutions; CPU runs are slow anyway);
    - MKL's sgemm gives different last bits for a row depending on how many rows
      the matrix has when it is small (the timestep-embedding ``Linear`` layers see
      ``2 x batch`` rows): 2D ``F.linear`` calls with at most
      :data:`SMALL_LINEAR_ROWS` rows are computed one row at a time (negligible cost).

    The VAE decoder is also batch-dependent; the engines decode one item at a time
    (:func:`decode_latents_one_by_one`). On CUDA nothing is changed: cuDNN/cuBLAS
    choose kernels by shape too, so a batched GPU result can differ from the
    single-slice one at fp16 rounding level. The mkldnn switch is process-wide while
    the block runs; the function mode is local to the calling thread.
    """
    import torch

    if not str(device).startswith("cpu"):
        yield
        return
    mkldnn = torch.backends.mkldnn
    # set only the "enabled" flag: flags() also rewrites the TF32 setting and warns each time
    previous = mkldnn.set_flags(False, None, None, None)[0]
    try:
        with _rowwise_small_linear_mode():
            yield
    finally:
        mkldnn.set_flags(previous, None, None, None)


def decode_latents_one_by_one(pipe, latents) -> np.ndarray:
    """Decode latents item by item (batch-invariant) to ``(B, H, W, 3)`` float32 in [0, 1]."""
    import torch

    images = []
    scale = pipe.vae.config.scaling_factor
    with torch.no_grad():
        for index in range(latents.shape[0]):
            latent = latents[index : index + 1].to(pipe.vae.dtype) / scale
            decoded = pipe.vae.decode(latent, return_dict=False)[0]
            images.append(pipe.image_processor.postprocess(decoded.float(), output_type="np")[0])
    return np.stack(images).astype(np.float32)


# --------------------------------------------------------------------------------------
# Progress relay and cancellation around diffusers calls
# --------------------------------------------------------------------------------------


class StepRelay:
    """Passed to code running a diffusers call: reports steps, says when to stop.

    :meth:`step` waits until the consuming generator has handed the event on (its
    ``yield`` returned), so work advances only while the engine generator is being
    iterated, and a cancel requested while handling a progress event takes effect
    at the very next step.
    """

    def __init__(self, cancel: CancelToken | None) -> None:
        self._cancel = cancel
        self._stop = threading.Event()
        self._handed_on = threading.Semaphore(0)
        self.events: queue.Queue = queue.Queue()

    def should_stop(self) -> bool:
        """Whether the run was cancelled or its consumer went away."""
        return self._stop.is_set() or (self._cancel is not None and self._cancel.cancelled)

    def step(self, count: int = 1) -> None:
        """Report ``count`` finished denoising steps and wait until they were handed on."""
        self.events.put(("step", count))
        self._handed_on.acquire()

    def step_or_raise(self, count: int = 1) -> None:
        """Report steps, then raise :class:`Cancelled` if the run should stop (legacy callbacks)."""
        self.step(count)
        if self.should_stop():
            raise Cancelled("the job was cancelled; nothing was written")

    def handed_on(self) -> None:
        """Called by the consumer once a step event was yielded."""
        self._handed_on.release()

    def stop(self) -> None:
        """Ask the running call to stop at its next step (and release a waiting step)."""
        self._stop.set()
        self._handed_on.release()


def relay_call(
    call: Callable[[StepRelay], T], cancel: CancelToken | None
) -> Generator[int, None, T]:
    """Run ``call(relay)`` in a worker thread, yielding step counts as they are reported.

    The generator returns ``call``'s result or re-raises its exception (e.g.
    :class:`Cancelled` raised from a step callback). If the consumer closes the
    generator early, the worker is asked to stop and is joined before returning,
    so no diffusers call keeps running in the background.
    """
    import torch

    relay = StepRelay(cancel)
    outcome: dict[str, Any] = {}
    threads = torch.get_num_threads()

    def work() -> None:
        torch.set_num_threads(threads)  # intra-op thread count is per thread under OpenMP
        try:
            outcome["value"] = call(relay)
        except BaseException as error:  # re-raised in the consumer's thread
            outcome["error"] = error
        finally:
            relay.events.put(("done", 0))

    worker = threading.Thread(target=work, name="napari-scigen-diffusion", daemon=True)
    worker.start()
    try:
        while True:
            kind, count = relay.events.get()
            if kind == "done":
                break
            yield count
            relay.handed_on()
    finally:
        relay.stop()
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class StepCounter:
    """Turns step counts into :class:`Progress` events over a known total."""

    def __init__(self, total: int) -> None:
        self.total = max(int(total), 1)
        self.done = 0

    def advance(self, count: int, message: str) -> Progress:
        """Add ``count`` steps and return the event to yield."""
        self.done = min(self.total, self.done + int(count))
        return Progress(self.done, self.total, message)

    def relay(
        self,
        call: Callable[[StepRelay], T],
        cancel: CancelToken | None,
        message: str,
        steps_in_call: int,
    ) -> Generator[Progress, None, T]:
        """Like :func:`relay_call`, yielding :class:`Progress` such as ``"<message>: step 3/20"``."""
        steps = relay_call(call, cancel)
        local = 0
        try:
            while True:
                try:
                    count = next(steps)
                except StopIteration as stop:
                    return stop.value
                local += count
                yield self.advance(
                    count, f"{message}: step {min(local, steps_in_call)}/{steps_in_call}"
                )
        finally:
            steps.close()


def describe_zs(zs: Iterable[int]) -> str:
    """Short human description of slice indices for messages."""
    zs = list(zs)
    return f"slice {zs[0]}" if len(zs) == 1 else f"slices {zs[0]}..{zs[-1]} ({len(zs)})"
