"""LoRA adapters (and textual-inversion tokens) on the Stable Diffusion engines: load, scale, unload.

An adapter folder is what ``napari-scigen finetune-sd`` writes
(:mod:`napari_scigen.engines.sd.finetune`), in diffusers' format, so other diffusers
LoRA folders work too:

* ``pytorch_lora_weights.safetensors``: LoRA weights of the UNet (and of the text
  encoder when it was trained);
* ``learned_embeds.safetensors`` (optional): ``{token: embedding}`` of a learned
  textual-inversion token;
* ``adapter.json`` (optional): how it was trained (base model, rank, prompt, token...).

The cached pipeline is never changed: :func:`adapted_pipeline` builds the run's fresh
pipeline on *structural clones* of the UNet, text encoder and tokenizer (new module
objects sharing the cached weight tensors, so no weights are copied), loads the
adapter into those with peft and scales it. :func:`release_adapter` unloads it at the
end of the run. A run without an adapter therefore gives exactly the base output,
whatever ran before. peft and diffusers are imported lazily.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...core.models import ModelNotAvailableError
from ...core.validation import InvalidInputError
from .hub import fresh_pipeline

#: File of the LoRA weights inside an adapter folder (diffusers' default name).
ADAPTER_WEIGHTS = "pytorch_lora_weights.safetensors"
#: File of a learned textual-inversion token inside an adapter folder.
EMBEDDINGS_FILE = "learned_embeds.safetensors"
#: How the adapter was trained (written by finetune-sd).
ADAPTER_RECORD = "adapter.json"
#: Name the adapter is loaded under in peft.
ADAPTER_NAME = "napari-scigen"


def clone_module(module):
    """A new module tree that shares every parameter and buffer tensor of ``module``.

    Changing the clone's structure (peft wrapping layers, new attention processors,
    resized embeddings) leaves ``module`` untouched, and costs no weight memory.
    """
    if module is None:
        return None
    shared = {
        id(tensor): tensor for tensor in itertools.chain(module.parameters(), module.buffers())
    }
    return copy.deepcopy(module, shared)


def locate_adapter(path: str) -> Path:
    """The adapter folder ``path``, checked before anything loads.

    Raises
    ------
    ModelNotAvailableError
        When the folder does not exist or holds neither LoRA weights nor a token.
    """
    folder = Path(str(path)).expanduser()
    if not folder.is_dir():
        raise ModelNotAvailableError(
            f"adapter folder {str(folder)!r} does not exist: train one on your volume with "
            "the training method 'sd-lora' (its output folder is the adapter) or give a "
            "diffusers LoRA folder"
        )
    if not (folder / ADAPTER_WEIGHTS).is_file() and not (folder / EMBEDDINGS_FILE).is_file():
        raise ModelNotAvailableError(
            f"adapter folder {str(folder)!r} has no {ADAPTER_WEIGHTS} or {EMBEDDINGS_FILE}: "
            "give a folder written by the training method 'sd-lora' (its final weights "
            "appear when training ends)"
        )
    return folder


def read_adapter_record(folder: str | Path) -> dict[str, Any]:
    """The ``adapter.json`` of a folder (empty for folders written by other tools)."""
    path = Path(folder) / ADAPTER_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _text_encoder_lora(text_encoder, state: dict, alpha: float | None, scale: float) -> None:
    """Put the LoRA layers of ``state`` (diffusers format, no prefix) into ``text_encoder``.

    Done with peft directly: transformers' own adapter loading refuses some peft versions.
    """
    from diffusers.utils import convert_state_dict_to_peft
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer
    from peft.utils import set_peft_model_state_dict

    peft_state = convert_state_dict_to_peft(state)
    downs = {k: v for k, v in peft_state.items() if ".lora_A." in k}
    rank = int(next(iter(downs.values())).shape[0])
    targets = sorted({k.split(".lora_A.")[0].rsplit(".", 1)[-1] for k in downs})
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=targets)
    inject_adapter_in_model(config, text_encoder, adapter_name=ADAPTER_NAME)
    set_peft_model_state_dict(text_encoder, peft_state, adapter_name=ADAPTER_NAME)
    for module in text_encoder.modules():
        if isinstance(module, LoraLayer):
            module.set_scale(ADAPTER_NAME, float(scale))


def _refuse_nonfinite(tensors: dict, path: Path) -> None:
    """Refuse adapter weights holding NaN or infinite values (they would give NaN images).

    Raises
    ------
    InvalidInputError
    """
    broken = [
        k
        for k, v in tensors.items()
        if hasattr(v, "is_floating_point") and v.is_floating_point() and not v.isfinite().all()
    ]
    if broken:
        raise InvalidInputError(
            f"{path} holds NaN/infinite weights ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}): the adapter is broken; use an earlier "
            "one or train it again"
        )


def _load_into(pipe, folder: Path, scale: float, record: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"adapter": str(folder), "scale": float(scale)}
    if (folder / ADAPTER_WEIGHTS).is_file():
        try:
            state, alphas, metadata = type(pipe).lora_state_dict(
                str(folder), weight_name=ADAPTER_WEIGHTS, return_lora_metadata=True
            )
            _refuse_nonfinite(state, folder / ADAPTER_WEIGHTS)
            unet_state = {k: v for k, v in state.items() if k.startswith("unet.")}
            prefix = "text_encoder."
            text_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if unet_state:
                pipe.unet.load_lora_adapter(
                    unet_state,
                    prefix="unet",
                    network_alphas=alphas,
                    adapter_name=ADAPTER_NAME,
                    metadata=(metadata or {}).get("unet") if metadata else None,
                )
                pipe.unet.set_adapters([ADAPTER_NAME], weights=[float(scale)])
            if text_state:
                alpha = record.get("adapter", {}).get("alpha")
                _text_encoder_lora(pipe.text_encoder, text_state, alpha, scale)
        except InvalidInputError:
            raise
        except (RuntimeError, ValueError, KeyError) as error:
            base = record.get("base_model", "unknown")
            raise InvalidInputError(
                f"the adapter {str(folder)!r} (trained on {base}) does not fit this "
                f"{type(pipe).__name__}: {' '.join(str(error).split())[:200]}"
            ) from None
        info["lora"] = True
    token = record.get("token")
    if (folder / EMBEDDINGS_FILE).is_file():
        from safetensors.torch import load_file

        try:
            embeddings = load_file(str(folder / EMBEDDINGS_FILE), device="cpu")
        except (OSError, ValueError, RuntimeError) as error:  # SafetensorError too
            raise InvalidInputError(
                f"{folder / EMBEDDINGS_FILE} is not a valid safetensors file "
                f"({' '.join(str(error).split())[:200]})"
            ) from None
        _refuse_nonfinite(embeddings, folder / EMBEDDINGS_FILE)
        pipe.load_textual_inversion(str(folder / EMBEDDINGS_FILE), token=token)
        info["token"] = token
    info["record"] = record
    return info


def strip_lora(module) -> None:
    """Replace every peft LoRA layer of ``module`` by the layer it wraps (exactly the base)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, child in list(module.named_modules()):
        if name and isinstance(child, BaseTunerLayer):
            parent_name, _, attribute = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attribute, child.get_base_layer())


def adapted_pipeline(cached, adapter: str | None, scale: float = 1.0, **overrides):
    """A fresh pipeline of ``cached`` (see :func:`~.hub.fresh_pipeline`) with ``adapter`` applied.

    Parameters
    ----------
    cached : DiffusionPipeline
        The cached pipeline (never changed).
    adapter : str or None
        Adapter folder; ``None`` returns a plain fresh pipeline.
    scale : float
        LoRA strength (0 = base model).
    **overrides
        Components replaced in the fresh pipeline (schedulers...).

    Returns
    -------
    pipeline, dict or None
        The pipeline and what was loaded (for provenance), ``None`` without adapter.
    """
    if not adapter:
        return fresh_pipeline(cached, **overrides), None
    folder = locate_adapter(adapter)
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ImportError("LoRA adapters need peft: pip install peft") from None
    record = read_adapter_record(folder)
    components = dict(overrides)
    for name in ("unet", "text_encoder"):
        if getattr(cached, name, None) is not None and name not in components:
            components[name] = clone_module(getattr(cached, name))
    if getattr(cached, "tokenizer", None) is not None and "tokenizer" not in components:
        components["tokenizer"] = copy.deepcopy(cached.tokenizer)
    pipe = fresh_pipeline(cached, **components)
    return pipe, _load_into(pipe, folder, scale, record)


def release_adapter(pipe, info: dict[str, Any] | None) -> None:
    """Unload what :func:`adapted_pipeline` loaded (the cached modules were never touched)."""
    if not info:
        return
    if info.get("lora"):
        for name in ("unet", "text_encoder"):
            if getattr(pipe, name, None) is not None:
                strip_lora(getattr(pipe, name))
    if info.get("token"):
        pipe.unload_textual_inversion(info["token"])


@contextmanager
def applied_adapter(cached, params, **overrides) -> Iterator[tuple[Any, dict[str, Any] | None]]:
    """``with applied_adapter(cached, params, scheduler=...) as (pipe, info):`` for one run.

    Uses ``params.adapter`` and ``params.adapter_scale``; unloads when the block ends
    (also on errors, cancel or a closed generator).
    """
    pipe, info = adapted_pipeline(cached, params.adapter, params.adapter_scale, **overrides)
    try:
        yield pipe, info
    finally:
        release_adapter(pipe, info)


def adapter_provenance(info: dict[str, Any] | None) -> dict[str, Any] | None:
    """What to record about the adapter of a run (``None`` without one)."""
    if not info:
        return None
    record = info.get("record", {})
    return {
        "folder": info["adapter"],
        "scale": info["scale"],
        "lora": bool(info.get("lora")),
        "token": info.get("token"),
        "base_model": record.get("base_model"),
        "trained_steps": record.get("step"),
    }
