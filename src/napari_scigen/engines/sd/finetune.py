"""LoRA fine-tuning of Stable Diffusion on tiles of the user's volume (task ``train``,
method ``sd-lora``; the ``napari-scigen finetune-sd`` command).

The step Sordo et al. (J. Imaging 2025) name as missing: their diffusion models ran off
the shelf and "generally struggled in balancing visual fidelity with scientific
accuracy". Parameter-efficient fine-tuning on domain images (LoRA, Hu et al. 2022, as in
diffusers' training recipes) adapts the model to *this* scan:

* random resolution-sized tiles of the windowed slices (flips and 90-degree rotations),
  each paired with the domain ``prompt``;
* LoRA layers (peft) on the UNet's attention projections, optionally on the CLIP text
  encoder, optionally a new textual-inversion ``token`` (only its embedding row trains);
* the standard denoising loss (epsilon or v-prediction, as the model's scheduler says),
  optionally with DreamBooth prior preservation on ``class_images`` the base model makes
  from ``class_prompt`` (generated once, kept in the folder);
* fp16 (CUDA, with a gradient scaler) or bf16 autocast over frozen half-precision base
  weights, trainable weights in fp32; gradient checkpointing on request.

The output folder is an adapter every SD engine takes (``adapter=FOLDER``; see
:mod:`.adapters`): ``pytorch_lora_weights.safetensors`` (diffusers format),
``learned_embeds.safetensors`` with a token, ``adapter.json``, plus resumable
``checkpoint-*/`` folders (safetensors + JSON, optimizer and RNG states read with
``weights_only=True``; :mod:`napari_scigen.engines._training.checkpoint`). Running again
on the same folder resumes from the newest checkpoint. A fixed held-out batch (fixed
tiles, noise and timesteps) is scored before and after training: ``history["eval_loss"]``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator as PyGenerator
from pathlib import Path
from typing import Any

import numpy as np

from ...core.progress import CancelToken, Progress, check_cancelled
from ...core.provenance import make_provenance, software_versions, to_jsonable
from ...core.validation import InvalidInputError
from .adapters import ADAPTER_RECORD, ADAPTER_WEIGHTS, EMBEDDINGS_FILE
from .finetune_params import (
    ADAPTER_FIELDS,
    TEXT_ENCODER_LORA_MODULES,
    UNET_LORA_MODULES,
    SDLoRATrainParams,
)

#: Format tag of the fine-tuning checkpoints and adapter record.
LORA_FORMAT = "napari-scigen-sd-lora/1"
#: Class images of prior preservation, kept in the output folder.
CLASS_IMAGES_FILE = "class_images.safetensors"
#: Tiles in the fixed evaluation batch.
EVAL_TILES = 4


def _precision(params: SDLoRATrainParams, device: str):
    """``(mode, weight dtype, autocast dtype or None)`` for the run."""
    import torch

    mode = params.precision
    if mode == "auto":
        mode = "float16" if device.startswith("cuda") else "float32"
    if mode == "float16" and not device.startswith("cuda"):
        raise InvalidInputError(
            f"precision 'float16' needs a CUDA device (got {device}); use "
            "precision='bfloat16' or precision='float32'",
            options=["precision"],
        )
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[mode]
    return mode, dtype, (None if mode == "float32" else dtype)


def _load_components(params: SDLoRATrainParams, weight_dtype):
    """A fresh (never cached) StableDiffusionPipeline of ``params.model`` and its source."""
    from diffusers import StableDiffusionPipeline

    from .hub import SD_WHAT, load_pipeline, locate_model

    source = locate_model(
        params.model,
        what=SD_WHAT,
        index_file="model_index.json",
        local_files_only=params.local_files_only,
    )
    return load_pipeline(StableDiffusionPipeline, source, weight_dtype), source


def _check_resumable(saved: dict[str, Any], params: SDLoRATrainParams, path: Path) -> None:
    wanted = to_jsonable(params.adapter_settings())
    differing = [
        f"{k} {saved.get(k)!r} -> {wanted[k]!r}"
        for k in ADAPTER_FIELDS
        if saved.get(k) != wanted[k]
    ]
    if differing:
        raise InvalidInputError(
            f"{path} was trained with other adapter settings ({', '.join(differing)}): pass the "
            "same settings to resume, another output folder, or resume=False to start over",
            options=["resume"],
        )


class _Trainer:
    """The model parts, trainable weights and one training step of a fine-tuning run."""

    def __init__(self, pipe, params: SDLoRATrainParams, device: str, weight_dtype, autocast):
        import torch
        from diffusers import DDPMScheduler
        from peft import LoraConfig, inject_adapter_in_model

        self.params, self.device, self.autocast = params, device, autocast
        self.vae, self.unet = pipe.vae, pipe.unet
        self.text_encoder, self.tokenizer = pipe.text_encoder, pipe.tokenizer
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        for module in (self.vae, self.unet, self.text_encoder):
            module.requires_grad_(False)
        self.token_id = None
        if params.token:
            self._add_token(params.token.strip(), params.token_init)
        train_text = params.train_text_encoder or self.token_id is not None
        self.vae.to(device, dtype=weight_dtype)
        self.unet.to(device, dtype=weight_dtype)
        self.text_encoder.to(device, dtype=torch.float32 if train_text else weight_dtype)
        lora = {"r": params.rank, "lora_alpha": params.lora_alpha, "init_lora_weights": "gaussian"}
        self.unet.add_adapter(LoraConfig(target_modules=list(UNET_LORA_MODULES), **lora))
        if params.train_text_encoder:  # peft directly: transformers' add_adapter pins peft
            inject_adapter_in_model(
                LoraConfig(target_modules=list(TEXT_ENCODER_LORA_MODULES), **lora),
                self.text_encoder,
            )
        trainable = [p for p in self.unet.parameters() if p.requires_grad]
        trainable += [p for p in self.text_encoder.parameters() if p.requires_grad]
        for weights in trainable:
            weights.data = weights.data.float()
        if self.token_id is not None:
            embedding = self.text_encoder.get_input_embeddings().weight
            embedding.requires_grad_(True)
            self.original_embeddings = embedding.detach().clone()
            trainable.append(embedding)
        self.trainable = trainable
        if params.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if train_text:
                self.text_encoder.gradient_checkpointing_enable()
        self.unet.train()
        self.text_encoder.train(train_text)
        self.train_text = train_text
        self.optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=0.0)
        self.scaler = torch.amp.GradScaler("cuda") if autocast == torch.float16 else None

    def _add_token(self, token: str, init_word: str) -> None:
        if self.tokenizer.add_tokens(token) == 0:
            raise InvalidInputError(
                f"the token {token!r} is already a word of the tokenizer: choose a new one "
                "such as '<microct>'"
            )
        init_ids = self.tokenizer(init_word, add_special_tokens=False).input_ids
        self.text_encoder.resize_token_embeddings(len(self.tokenizer))
        self.token_id = self.tokenizer.convert_tokens_to_ids(token)
        weights = self.text_encoder.get_input_embeddings().weight.data
        weights[self.token_id] = weights[init_ids].mean(dim=0) if init_ids else weights.mean(dim=0)

    # -- numbers ------------------------------------------------------------------------
    def ids(self, prompt: str, count: int):
        tokens = self.tokenizer(
            [prompt] * count,
            padding="max_length",
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        )
        return tokens.input_ids.to(self.device)

    def loss(self, pixels, prompt: str, generator, timesteps=None, noise=None):
        """Denoising loss of ``pixels`` (``(B, 3, R, R)`` in [-1, 1]) under ``prompt``."""
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            encoded = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
            latents = encoded.sample(generator) * self.vae.config.scaling_factor
        count = latents.shape[0]
        if noise is None:
            noise = torch.randn(latents.shape, generator=generator).to(self.device, latents.dtype)
        if timesteps is None:
            total = self.noise_scheduler.config.num_train_timesteps
            timesteps = torch.randint(0, total, (count,), generator=generator)
        timesteps = timesteps.to(self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        with torch.autocast(
            self.device.split(":")[0], dtype=self.autocast, enabled=self.autocast is not None
        ):
            with torch.set_grad_enabled(self.train_text and torch.is_grad_enabled()):
                states = self.text_encoder(self.ids(prompt, count))[0]
            prediction = self.unet(noisy, timesteps, encoder_hidden_states=states).sample
        return F.mse_loss(prediction.float(), target.float())

    def step(self, loss) -> None:
        """Backward pass and optimizer step (keeps every old token embedding row fixed)."""
        import torch

        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.token_id is not None:
            with torch.no_grad():
                weights = self.text_encoder.get_input_embeddings().weight
                keep = torch.ones(weights.shape[0], dtype=torch.bool, device=weights.device)
                keep[self.token_id] = False
                weights[keep] = self.original_embeddings[keep].to(weights.dtype)

    # -- state --------------------------------------------------------------------------
    def lora_tensors(self) -> dict[str, Any]:
        """Every trainable tensor, prefixed ``unet.``/``text_encoder.``/``token_embedding``."""
        from peft.utils import get_peft_model_state_dict

        tensors = {f"unet.{k}": v for k, v in get_peft_model_state_dict(self.unet).items()}
        if self.params.train_text_encoder:
            tensors.update(
                {
                    f"text_encoder.{k}": v
                    for k, v in get_peft_model_state_dict(self.text_encoder).items()
                }
            )
        if self.token_id is not None:
            tensors["token_embedding"] = self.token_embedding()[None]
        return tensors

    def load_lora_tensors(self, tensors: dict[str, Any]) -> None:
        import torch
        from peft.utils import set_peft_model_state_dict

        def part(prefix):
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        set_peft_model_state_dict(self.unet, part("unet."))
        if self.params.train_text_encoder:
            set_peft_model_state_dict(self.text_encoder, part("text_encoder."))
        if self.token_id is not None:
            with torch.no_grad():
                weights = self.text_encoder.get_input_embeddings().weight
                weights[self.token_id] = tensors["token_embedding"][0].to(
                    weights.device, weights.dtype
                )

    def token_embedding(self):
        return self.text_encoder.get_input_embeddings().weight[self.token_id].detach().float().cpu()

    def save_adapter(self, out_dir: Path, record: dict[str, Any]) -> None:
        """Write the final adapter in diffusers' format plus ``adapter.json``."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        def layers(module):
            return convert_state_dict_to_diffusers(get_peft_model_state_dict(module))

        text = self.params.train_text_encoder
        StableDiffusionPipeline.save_lora_weights(
            str(out_dir),
            unet_lora_layers=layers(self.unet),
            text_encoder_lora_layers=layers(self.text_encoder) if text else None,
            weight_name=ADAPTER_WEIGHTS,
            safe_serialization=True,
            unet_lora_adapter_metadata=self.unet.peft_config["default"].to_dict(),
            text_encoder_lora_adapter_metadata=(
                self.text_encoder.peft_config["default"].to_dict() if text else None
            ),
        )
        if self.token_id is not None:
            save_file(
                {self.params.token.strip(): self.token_embedding()}, str(out_dir / EMBEDDINGS_FILE)
            )
        (out_dir / ADAPTER_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))


def _tiles(dataset, count: int, generator, augment: bool):
    """``(count, 3, R, R)`` tiles in [-1, 1] (grayscale replicated to RGB)."""
    from .._training.augment import random_dihedral

    tiles = dataset.sample(count, generator)
    if augment:
        tiles = random_dihedral(tiles, generator=generator)
    return tiles.repeat(1, 3, 1, 1)


def _class_images(pipe, params: SDLoRATrainParams, out_dir: Path, device: str):
    """The prior-preservation images, ``(N, 3, R, R)`` in [-1, 1]: read, or made once and kept."""
    import torch
    from safetensors.torch import load_file, save_file

    path = out_dir / CLASS_IMAGES_FILE
    if path.is_file():
        images = load_file(str(path))["images"]
        if images.shape[0] >= params.class_images and images.shape[-1] == params.resolution:
            return images[: params.class_images]
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    made = []
    for index in range(params.class_images):
        generator = torch.Generator().manual_seed(params.seed + 7919 + index)
        image = pipe(
            params.class_prompt,
            height=params.resolution,
            width=params.resolution,
            num_inference_steps=params.class_steps,
            generator=generator,
            output_type="pt",
        ).images
        made.append(image.float().cpu() * 2.0 - 1.0)
    images = torch.cat(made)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({"images": images.contiguous()}, str(path))
    return images


def _preview(pipe, trainer: _Trainer, params: SDLoRATrainParams, device: str) -> np.ndarray:
    """One image of ``params.prompt`` with the trained adapter, grayscale in [0, 1]."""
    import torch

    if params.preview_steps == 0:
        return np.zeros((params.resolution, params.resolution), np.float32)
    pipe.to(device)  # the pipeline holds the trained modules
    pipe.set_progress_bar_config(disable=True)
    trainer.unet.eval()
    trainer.text_encoder.eval()
    with (
        torch.no_grad(),
        torch.autocast(
            device.split(":")[0], dtype=trainer.autocast, enabled=trainer.autocast is not None
        ),
    ):
        image = pipe(
            params.prompt,
            height=params.resolution,
            width=params.resolution,
            num_inference_steps=params.preview_steps,
            generator=torch.Generator().manual_seed(params.seed),
            output_type="np",
        ).images[0]
    return np.asarray(image, np.float32).mean(axis=-1).clip(0.0, 1.0)


def run_finetune_sd(
    volume,
    params: SDLoRATrainParams,
    *,
    out_dir: str | os.PathLike,
    resume: bool = True,
    cancel: CancelToken | None = None,
) -> PyGenerator[Progress, None, Any]:
    """Fine-tune Stable Diffusion with LoRA on tiles of ``volume``; write an adapter folder.

    Parameters
    ----------
    volume : array-like
        ``(Z, Y, X)`` grayscale volume (uint8, uint16, int16 or float32).
    params : SDLoRATrainParams
    out_dir : path
        The adapter folder (created): final weights, ``adapter.json`` and checkpoints.
    resume : bool
        Continue from the newest checkpoint there (same adapter settings required).
    cancel : CancelToken, optional
        Checked every step; on cancel a checkpoint is written and ``Cancelled`` raised.

    Yields
    ------
    Progress
        One per step (with the loss); the preview at the end.

    Returns
    -------
    TrainResult
        ``data``: a preview image made with the adapter (grayscale, [0, 1]);
        ``checkpoint``: the adapter folder; ``history``: ``step``, ``loss``,
        ``eval_loss`` (before and after this run) ; provenance engine ``"train-sd-lora"``.

    Raises
    ------
    ModelNotAvailableError
        When the base model is missing offline (nothing is written).
    TrainingDivergedError
        If the loss becomes NaN/infinite (a user error; the last checkpoint is kept).
    """
    import torch

    from ...core.device import resolve_device
    from ...core.stack import Window, percentile_window
    from .._training.checkpoint import load_tensors_checkpoint, save_tensors_checkpoint
    from .._training.dataset import SliceDataset
    from .._training.divergence import smaller
    from .._training.hardware import hardware_description
    from .._training.loop import run_steps
    from .._training.result import TrainResult
    from .._training.resume import (
        check_resume_source,
        restore_optimizer,
        resume_point,
        source_record,
        training_volume,
    )

    array, identity = training_volume(volume)
    device = resolve_device(params.device)
    mode, weight_dtype, autocast = _precision(params, device)
    out_dir = Path(out_dir)
    start = resume_point(out_dir, resume, format=LORA_FORMAT, what="LoRA fine-tuning")
    checkpoint_path = start.checkpoint
    saved = None
    if checkpoint_path is not None:
        saved = load_tensors_checkpoint(
            checkpoint_path, format=LORA_FORMAT, what="LoRA fine-tuning"
        )
        _check_resumable(saved["metadata"]["adapter"], params, checkpoint_path)
        check_resume_source(saved["metadata"], identity, array, checkpoint_path)
        params = params.replace(seed=int(saved["metadata"]["seed"]))
    data_gen = torch.Generator().manual_seed(params.seed)
    noise_gen = torch.Generator().manual_seed(params.seed + 1)
    state = (saved["train_state"] or {}) if saved else {}
    if state:  # checked before the model loads
        try:
            data_gen.set_state(state["rng_data"])
            noise_gen.set_state(state["rng_noise"])
        except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as error:
            raise InvalidInputError(
                f"{saved['path']}: its random-generator state is missing or damaged "
                f"({type(error).__name__}); choose another output folder, or resume=False "
                "to start over",
                options=["resume"],
            ) from None
    yield Progress(0, 0, f"loading {params.model}")
    pipe, source = _load_components(params, weight_dtype)
    check_cancelled(cancel)
    window = (
        Window(**saved["metadata"]["window"])
        if saved
        else percentile_window(array, *params.window_percentiles)
    )
    dataset = SliceDataset(array, window, params.resolution, params.axes, params.crop)
    class_images = None
    if params.prior_preservation:
        yield Progress(0, 0, f"making {params.class_images} class images for prior preservation")
        class_images = _class_images(pipe, params, out_dir, device)
    trainer = _Trainer(pipe, params, device, weight_dtype, autocast)
    start_step, wall_before = 0, 0.0
    history: dict[str, list[float]] = {"step": [], "loss": [], "eval_loss": []}
    if saved:
        trainer.load_lora_tensors(saved["tensors"])
        if state:
            restore_optimizer(trainer.optimizer, state["optimizer"], params.learning_rate)
        start_step = int(saved["metadata"]["step"])
        wall_before = float(saved["metadata"]["training"]["wall_seconds"])
    eval_gen = torch.Generator().manual_seed(params.seed + 99)
    eval_tiles = _tiles(dataset, EVAL_TILES, eval_gen, augment=False)
    total_t = trainer.noise_scheduler.config.num_train_timesteps
    eval_timesteps = torch.linspace(total_t * 0.1, total_t * 0.9, EVAL_TILES).long()

    def evaluate() -> float:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(params.seed + 100)
            return float(trainer.loss(eval_tiles, params.prompt, generator, eval_timesteps))

    started = time.perf_counter()

    def record(step: int) -> dict[str, Any]:
        return {
            "format": LORA_FORMAT,
            "base_model": params.model,
            "base_model_location": source.location,
            "adapter": to_jsonable(params.adapter_settings()),
            "token": params.token.strip() if params.token else None,
            "prompt": params.prompt,
            "window": window.as_dict(),
            "train_params": to_jsonable(params.to_dict()),
            "seed": params.seed,
            "step": step,
            "precision": mode,
            "source": source_record(array, identity),
            "training": {
                "wall_seconds": wall_before + (time.perf_counter() - started),
                "hardware": hardware_description(device),
                "eval_loss": history["eval_loss"],
            },
            "software": software_versions(),
        }

    def checkpoint(step: int) -> Path:
        state = {
            "optimizer": trainer.optimizer.state_dict(),
            "rng_data": data_gen.get_state(),
            "rng_noise": noise_gen.get_state(),
        }
        return save_tensors_checkpoint(
            out_dir,
            step=step,
            tensors=trainer.lora_tensors(),
            metadata=record(step),
            train_state=state,
            keep=params.keep_checkpoints,
            format=LORA_FORMAT,
            replaces=start.replaced,
        )

    def train_step(step: int) -> dict[str, float]:
        tiles = _tiles(dataset, params.batch_size, data_gen, params.augment)
        loss = trainer.loss(tiles, params.prompt, noise_gen)
        if class_images is not None:
            chosen = torch.randint(
                0, class_images.shape[0], (params.batch_size,), generator=data_gen
            )
            prior = trainer.loss(class_images[chosen], params.class_prompt, noise_gen)
            loss = loss + params.prior_loss_weight * prior
        trainer.step(loss)
        return {"loss": float(loss.detach())}

    history["eval_loss"].append(evaluate())
    step = yield from run_steps(
        train_step,
        params,
        start_step=start_step,
        save=checkpoint,
        history=history,
        what="LoRA fine-tuning",
        hint=f"run again with {smaller('learning_rate', params.learning_rate)}",
        options=("learning_rate",),
        last_checkpoint=checkpoint_path,
        cancel=cancel,
    )
    history["eval_loss"].append(evaluate())
    last = checkpoint(step)
    final = record(step)
    trainer.save_adapter(out_dir, final)
    preview = _preview(pipe, trainer, params, device)
    total = params.train_steps
    yield Progress(total, total, f"trained {step} steps; adapter in {out_dir}", preview)
    provenance = make_provenance(
        "train-sd-lora",
        {**params.to_dict(), "device": device},
        model=params.model,
        seed=params.seed,
        source=final["source"],
        extra={
            "adapter_dir": str(out_dir),
            "checkpoint": str(last),
            "step": step,
            "resumed_from": start.name,
            "model_location": source.location,
            "precision": mode,
            "window": final["window"],
            "training": final["training"],
        },
    )
    return TrainResult(
        data=preview,
        provenance=provenance,
        checkpoint=out_dir,
        step=step,
        history=history,
        metadata=final,
        resumed_from=start.name,
    )
