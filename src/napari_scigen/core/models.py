"""One place for loaded models and for the 'weights are missing' error.

Models are cached in-process, keyed by ``(engine, model id/path, device, dtype)``
so a widget that runs twice does not reload Stable Diffusion. Weight files that
do not come from the Hugging Face cache (LPIPS backbones, FID Inception,
StyleGAN checkpoints) live in :func:`weights_dir`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from .validation import OptionsNamed

#: Environment variable overriding the weights directory.
WEIGHTS_ENV = "NAPARI_SCIGEN_WEIGHTS"


class ModelNotAvailableError(OptionsNamed, RuntimeError):
    """A model or weight file is not on this machine and cannot be fetched.

    Options the message suggests are spelled as keyword arguments and listed in
    ``options`` (see :mod:`napari_scigen.core.validation`).
    """


def weights_dir() -> Path:
    """Directory for weight files: ``$NAPARI_SCIGEN_WEIGHTS`` or ``~/.cache/napari-scigen``."""
    configured = os.environ.get(WEIGHTS_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "napari-scigen"


def torch_hub_checkpoints() -> Path:
    """Where torch.hub (LPIPS backbones, torchvision Inception) keeps downloaded checkpoints."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache directory diffusers/transformers read from."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(hf_home) / "hub"


def missing_hub_model_message(model: str, what: str) -> str:
    """A specific, actionable message for a hub model that is not cached locally."""
    return (
        f"{what} model {model!r} is not available offline: it is neither a local directory "
        f"nor in the Hugging Face cache ({hf_hub_cache()}).\n"
        f"On a machine with internet, pre-download it with:\n"
        f"    hf download {model}      (older huggingface_hub: huggingface-cli download {model})\n"
        f"(or python -c \"from huggingface_hub import snapshot_download; snapshot_download('{model}')\"),\n"
        f"then copy the cache folder 'models--{model.replace('/', '--')}' into {hf_hub_cache()}, "
        f"or pass a local directory saved with save_pretrained() as the model path."
    )


class ModelCache:
    """A small thread-safe LRU cache of loaded models."""

    def __init__(self, max_items: int = 4) -> None:
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.max_items = max_items

    def get(self, key: Hashable, loader: Callable[[], Any]) -> Any:
        """Return the cached model for ``key``, loading it with ``loader()`` if absent."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        model = loader()
        with self._lock:
            self._items[key] = model
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return model

    def clear(self) -> None:
        """Forget every cached model (frees GPU memory once no one holds a reference)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


#: The process-wide model cache used by all engines.
MODEL_CACHE = ModelCache()
