"""Tiny, offline InstructPix2Pix, LEDITS++ and Stable unCLIP pipelines for tests (the LoRA
fine-tuning uses the tiny SD pipeline of :mod:`tiny_sd`).

Built from configs with seeded random weights, saved with ``save_pretrained`` and
loaded back by the engines through the real ``from_pretrained(local_dir)`` path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tiny_sd import (
    TINY_RESOLUTION,
    _seeded,
    _tiny_schedulers,
    _tiny_text_encoder,
    _tiny_tokenizer,
    _tiny_unet,
    _tiny_vae,
    tiny_models,
)

#: Width of the tiny CLIP image embedding of the unCLIP pipeline.
TINY_IMAGE_EMBEDDING = 16


def build_tiny_instructpix2pix_pipeline(directory: Path, *, seed: int = 2) -> Path:
    """A tiny ``StableDiffusionInstructPix2PixPipeline`` (8-channel UNet), saved to ``directory``."""
    from diffusers import StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel

    _seeded(seed)
    tokenizer = _tiny_tokenizer()
    scheduler, _ = _tiny_schedulers()
    config = dict(_tiny_unet().config)
    config["in_channels"] = 8
    unet = UNet2DConditionModel.from_config(config).eval()
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=_tiny_vae(),
        text_encoder=_tiny_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(directory))
    return directory


def build_tiny_ledits_pipeline(directory: Path, *, seed: int = 4) -> Path:
    """A tiny Stable Diffusion pipeline whose UNet attends at a quarter of the latent size.

    LEDITS++ builds its cross-attention masks from the maps at ``latent / 4``
    (16x16 for SD 1.5 at 512 px); the UNet of :mod:`tiny_sd` has attention only at full
    latent size, so this one has three levels (8, 4, 2 latent pixels for 64 px crops).
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    _seeded(seed)
    tokenizer = _tiny_tokenizer()
    scheduler, _ = _tiny_schedulers()
    config = dict(_tiny_unet().config)
    config.update(
        block_out_channels=(16, 32, 32),
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
    )
    pipe = StableDiffusionPipeline(
        vae=_tiny_vae(),
        text_encoder=_tiny_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_config(config).eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(directory))
    return directory


def build_tiny_unclip_pipeline(directory: Path, *, seed: int = 3) -> Path:
    """A tiny ``StableUnCLIPImg2ImgPipeline`` (CLIP image encoder, noised image embeddings)."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    _seeded(seed)
    tokenizer = _tiny_tokenizer()
    width = TINY_IMAGE_EMBEDDING
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=width,
            projection_dim=width,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=32,
            patch_size=8,
        )
    ).eval()
    config = dict(_tiny_unet().config)
    config.update(class_embed_type="projection", projection_class_embeddings_input_dim=2 * width)
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(config).eval()
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=width),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer,
        text_encoder=_tiny_text_encoder(tokenizer),
        unet=unet,
        scheduler=DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            prediction_type="v_prediction",
            set_alpha_to_one=False,
            steps_offset=1,
            clip_sample=False,
        ),
        vae=_tiny_vae(),
    )
    pipe.save_pretrained(str(directory))
    return directory


@dataclass(frozen=True)
class MoreTinyModels:
    """Folders of the tiny models of one test session."""

    sd: Path
    instructpix2pix: Path
    ledits: Path
    unclip: Path


_BUILT: list[MoreTinyModels] = []


def more_tiny_models(make_dir: Callable[[], Path]) -> MoreTinyModels:
    """Build the tiny SD (shared with :mod:`tiny_sd`), InstructPix2Pix and unCLIP pipelines once."""
    if not _BUILT:
        sd = tiny_models(make_dir).sd
        root = make_dir()
        _BUILT.append(
            MoreTinyModels(
                sd=sd,
                instructpix2pix=build_tiny_instructpix2pix_pipeline(root / "instructpix2pix"),
                ledits=build_tiny_ledits_pipeline(root / "ledits"),
                unclip=build_tiny_unclip_pipeline(root / "unclip"),
            )
        )
    return _BUILT[0]


__all__ = [
    "TINY_RESOLUTION",
    "MoreTinyModels",
    "build_tiny_instructpix2pix_pipeline",
    "build_tiny_ledits_pipeline",
    "build_tiny_unclip_pipeline",
    "more_tiny_models",
]
