"""Where Stable Diffusion models come from, and loading them without surprises.

A model is a local directory (written by ``save_pretrained`` or a hub snapshot) or a
Hugging Face hub id. :func:`locate_model` decides which before anything loads and
fails with a short :class:`~napari_scigen.core.models.ModelNotAvailableError` when
the files cannot be had offline (``local_files_only`` or ``HF_HUB_OFFLINE``, or the
hub does not answer within :data:`HUB_PROBE_TIMEOUT_S`: :func:`hub_reachable`), writing
nothing, in seconds rather than after the hub client's retries. :func:`load_from_source` calls ``from_pretrained`` with the right
offline flags and turns "files missing / no network" errors into the same short
error. Loaded pipelines are kept in the process-wide model cache; a run works on a
:func:`fresh_pipeline` sharing the cached modules so it never mutates the cached one.

diffusers and huggingface_hub are imported lazily inside functions.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ...core.models import (
    MODEL_CACHE,
    ModelNotAvailableError,
    hf_hub_cache,
    missing_hub_model_message,
)

T = TypeVar("T")

#: What the base models are called in user-facing messages.
SD_WHAT = "Stable Diffusion"


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


#: Seconds the hub gets to answer one request before it is taken as unreachable.
HUB_PROBE_TIMEOUT_S = 3.0
#: Seconds an answer of :func:`hub_reachable` is reused (one probe per job, not per file).
_PROBE_REUSE_S = 30.0
_probes: dict[str, tuple[float, bool]] = {}


def hub_endpoint() -> str:
    """The Hugging Face endpoint downloads would use (``HF_ENDPOINT`` or the public hub)."""
    endpoint = os.environ.get("HF_ENDPOINT", "").strip()
    if not endpoint:
        try:
            from huggingface_hub import constants

            endpoint = str(constants.ENDPOINT)
        except ImportError:  # pragma: no cover - huggingface_hub ships with diffusers
            endpoint = "https://huggingface.co"
    return endpoint.rstrip("/")


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the hub answers one HTTP request within ``timeout`` seconds.

    Any HTTP answer (even an error status) counts; no answer, a refused connection or a
    name that does not resolve means downloads cannot work now, so callers fail at once
    with the download instructions instead of spending tens of seconds in the hub
    client's retries. The probe runs on a daemon thread, so a hanging DNS lookup costs
    ``timeout`` too; answers are reused for a few seconds.
    """
    import threading
    import time
    import urllib.error
    import urllib.request

    endpoint = hub_endpoint()
    now = time.monotonic()
    reused = _probes.get(endpoint)
    if reused is not None and now - reused[0] < _PROBE_REUSE_S:
        return reused[1]
    answer = {"reachable": False}

    def probe() -> None:
        request = urllib.request.Request(f"{endpoint}/api/models?limit=1", method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - http(s) only
                answer["reachable"] = True
        except urllib.error.HTTPError:
            answer["reachable"] = True  # it answered
        except (OSError, ValueError):
            answer["reachable"] = False

    if not endpoint.startswith(("http://", "https://")):
        return False
    thread = threading.Thread(target=probe, name="scigen-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    reachable = answer["reachable"] and not thread.is_alive()
    _probes[endpoint] = (time.monotonic(), reachable)
    return reachable


def _unreachable_note() -> str:
    return f"\n(the hub at {hub_endpoint()} did not answer within {HUB_PROBE_TIMEOUT_S:g} s)"


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
        check_local_model(path, what=what, index_file=index_file)
        return ModelSource(model, str(path.resolve()), True, cached=True, offline=True)
    if _looks_like_path(model):
        raise ModelNotAvailableError(f"{what} model directory {model!r} does not exist")
    offline = bool(local_files_only) or hub_offline()
    cached = _in_hub_cache(model, index_file)
    if offline and not cached:
        raise ModelNotAvailableError(missing_hub_model_message(model, what))
    if not offline and not cached and not hub_reachable():  # no network: no retries
        raise ModelNotAvailableError(missing_hub_model_message(model, what) + _unreachable_note())
    return ModelSource(model, model, False, cached=cached, offline=offline)


#: Pipeline components never loaded from the folder: dropped by :func:`load_pipeline`
#: (safety checker, feature extractor) or passed in separately (ControlNet).
_COMPONENTS_NOT_LOADED = frozenset({"safety_checker", "feature_extractor", "controlnet"})
#: Pipelines loaded with all their components (the unCLIP loader keeps the CLIP image
#: processor ``feature_extractor`` and the ``image_encoder``): only the safety checker
#: and a separately passed ControlNet are skipped for them.
_PIPELINES_KEEPING_FEATURE_EXTRACTOR = ("StableUnCLIPImg2ImgPipeline", "StableUnCLIPPipeline")


def _components_not_loaded(index: dict) -> frozenset[str]:
    """The ``model_index.json`` components the loader for this pipeline class never reads."""
    if str(index.get("_class_name", "")) in _PIPELINES_KEEPING_FEATURE_EXTRACTOR:
        return _COMPONENTS_NOT_LOADED - {"feature_extractor"}
    return _COMPONENTS_NOT_LOADED


def _component_problem(folder: Path, library: str, class_name: str) -> str | None:
    """The file missing from one component folder (``None`` when it looks complete)."""
    if not folder.is_dir():
        return "the folder does not exist"
    names = {p.name for p in folder.iterdir() if p.is_file()}
    if "Tokenizer" in class_name:
        complete = "tokenizer.json" in names or {"vocab.json", "merges.txt"} <= names
        return None if complete else "no tokenizer.json (or vocab.json and merges.txt)"
    if "Scheduler" in class_name:
        return None if "scheduler_config.json" in names else "no scheduler_config.json"
    if "ImageProcessor" in class_name or "FeatureExtractor" in class_name:
        return None if "preprocessor_config.json" in names else "no preprocessor_config.json"
    if "config.json" not in names:
        return "no config.json"
    weights = "model" if library == "transformers" else "diffusion_pytorch_model"
    if not any(n.endswith((".safetensors", ".bin", ".safetensors.index.json")) for n in names):
        return f"no weights file ({weights}.safetensors)"
    return None


def check_local_model(path: Path, *, what: str, index_file: str) -> None:
    """Refuse a local model folder that lacks a component, naming it (reads only).

    For a pipeline (``model_index.json``) every listed component that is loaded from
    the folder must have its subfolder with its configuration and weights (for unCLIP
    also the CLIP ``feature_extractor`` and ``image_encoder``); for a
    single model (``config.json``) the folder must hold a weights file.

    Raises
    ------
    ModelNotAvailableError
        Naming the missing component and file.
    """
    import json

    problem = None
    if index_file != "model_index.json":
        missing = _component_problem(path, "diffusers", "Model")
        problem = None if missing is None else f"it has {missing}"
    else:
        try:
            index = json.loads((path / index_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelNotAvailableError(
                f"{what} model directory {str(path)!r}: {index_file} is unreadable ({error})"
            ) from None
        index = index if isinstance(index, dict) else {}
        skipped = _components_not_loaded(index)
        for name, entry in sorted(index.items()):
            if name.startswith("_") or name in skipped:
                continue
            if not (isinstance(entry, list) and len(entry) == 2 and all(entry)):
                continue  # a flag (requires_safety_checker) or a component set to null
            missing = _component_problem(path / name, str(entry[0]), str(entry[1]))
            if missing is not None:
                problem = f"its {name!r} component is missing ({name}/: {missing})"
                break
    if problem is not None:
        raise ModelNotAvailableError(
            f"{what} model directory {str(path)!r} is incomplete: {problem}; copy the whole "
            "folder written by save_pretrained() or the complete hub snapshot"
        )


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


_MISMATCH_NAMES = (
    r"Cannot load (\S+) because it has shape",
    r"because (\S+) expected shape",
    r"size mismatch for (\S+?):",
)


def _weights_mismatch(error: BaseException) -> str | None:
    """The parameter named when ``error`` (or its cause) says weights have the wrong shape.

    diffusers words this several ways and adds advice (``ignore_mismatched_sizes=True``)
    that would load random weights in their place; ``"?"`` when no name is given.
    """
    import re

    current, seen = error, 0
    while current is not None and seen < 10:
        text = str(current)
        if isinstance(current, (ValueError, RuntimeError)) and (
            "ignore_mismatched_sizes" in text or "size mismatch" in text
        ):
            for pattern in _MISMATCH_NAMES:
                found = re.search(pattern, text)
                if found:
                    return found.group(1).strip(".,'\"")
            return "?"
        current, seen = current.__cause__ or current.__context__, seen + 1
    return None


def _mismatch_message(source: ModelSource, what: str, name: str) -> str:
    where = (
        f"{what} model directory {source.location!r}"
        if source.is_local
        else f"cached {what} model {source.requested!r}"
    )
    detail = "" if name == "?" else f" ({name} has another shape)"
    return (
        f"{where}: its weights do not match its config{detail}; the files are damaged or "
        "come from two different models: download the model again"
    )


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
        except (ValueError, RuntimeError) as error:
            name = _weights_mismatch(error)
            if name is None:
                raise
            raise ModelNotAvailableError(_mismatch_message(source, what, name)) from None
    attempts = [True] if source.offline else ([True, False] if source.cached else [False])
    last_error: BaseException | None = None
    for local_only in attempts:
        if not local_only and not hub_reachable():  # a cached model short of files
            last_error = ConnectionError(_unreachable_note().strip("\n()"))
            break
        try:
            return load(source.location, {"local_files_only": local_only, "cache_dir": cache_dir})
        except Exception as error:
            name = _weights_mismatch(error)
            if name is not None:
                raise ModelNotAvailableError(_mismatch_message(source, what, name)) from None
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


@contextlib.contextmanager
def _without_loading_bars():
    """diffusers' and transformers' loading bars off while a model loads from disk.

    They write to stderr even under ``-q`` and before a one-line error; the engines report
    their own progress ("loading MODEL"). Download bars (huggingface_hub) are kept.
    """
    restore = []
    for name in ("diffusers.utils.logging", "transformers.utils.logging"):
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - both ship with the SD extra
            continue
        if module.is_progress_bar_enabled():
            module.disable_progress_bar()
            restore.append(module.enable_progress_bar)
    try:
        yield
    finally:
        for enable in restore:
            enable()


def load_pipeline(cls, source: ModelSource, dtype, **components: Any):
    """``cls.from_pretrained`` of ``source`` without the safety checker (see :func:`load_from_source`).

    The safety checker is a filter for photographs that would blank any microCT output
    it flags; ``components`` are passed on (e.g. ``controlnet=``).
    """

    def load(location: str, flags: dict[str, Any]):
        return cls.from_pretrained(
            location,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **components,
            **pretrained_kwargs(dtype),
            **flags,
        )

    with _without_loading_bars():
        return load_from_source(source, load, what=SD_WHAT)


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
