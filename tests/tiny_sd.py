"""Tiny, offline Stable Diffusion / ControlNet pipelines for tests.

Everything is built from configs with random weights (seeded), saved with
``save_pretrained`` and loaded back by the engines through the real
``from_pretrained(local_dir)`` path. No hub access is needed.

The VAE has four resolution levels, so its latent scale factor is 8 as in
Stable Diffusion 1.x/2.x: a 64x64 slice becomes an 8x8 latent.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Tokenizer length used by the tiny CLIP text encoder (must match max_position_embeddings).
TINY_MAX_TOKENS = 16
#: Model resolution the tiny pipelines are used at in tests (multiple of 8).
TINY_RESOLUTION = 64


def _byte_level_symbols() -> list[str]:
    """The 256 printable symbols GPT-2/CLIP byte-level BPE uses for the bytes 0..255."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def write_tiny_tokenizer_files(directory: Path) -> Path:
    """Write a byte-level CLIP ``vocab.json`` and an empty ``merges.txt`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    symbols = _byte_level_symbols()
    vocab: dict[str, int] = {}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
    for symbol in symbols:
        vocab[symbol + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return directory


def _tiny_tokenizer():
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as work_dir:
        files = write_tiny_tokenizer_files(Path(work_dir))
        return CLIPTokenizer.from_pretrained(str(files), model_max_length=TINY_MAX_TOKENS)


def _tiny_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=16,
    )
    return CLIPTextModel(config).eval()


def _tiny_unet(cross_attention_dim: int = 16):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=TINY_RESOLUTION // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=8,
    ).eval()


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=TINY_RESOLUTION,
    ).eval()


def _tiny_schedulers():
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    inverse = DDIMInverseScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return scheduler, inverse


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def build_tiny_sd_pipeline(directory: Path, *, seed: int = 0) -> Path:
    """Build a tiny ``StableDiffusionPipeline`` (like a hub SD 1.5 repo) and save it.

    The saved folder has the same layout as ``stable-diffusion-v1-5/stable-diffusion-v1-5``
    (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
    ``scheduler/``) without a safety checker.

    Parameters
    ----------
    directory : pathlib.Path
        Where to save the pipeline (created).
    seed : int
        Seed for the random weights.

    Returns
    -------
    pathlib.Path
        ``directory``.
    """
    from diffusers import StableDiffusionPipeline

    _seeded(seed)
    tokenizer = _tiny_tokenizer()
    scheduler, _ = _tiny_schedulers()
    pipe = StableDiffusionPipeline(
        vae=_tiny_vae(),
        text_encoder=_tiny_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=_tiny_unet(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(directory))
    return directory


def build_tiny_diffedit_pipeline(directory: Path, *, seed: int = 0) -> Path:
    """Build a tiny ``StableDiffusionDiffEditPipeline`` including its ``inverse_scheduler``.

    Parameters
    ----------
    directory : pathlib.Path
        Where to save the pipeline (created).
    seed : int
        Seed for the random weights.

    Returns
    -------
    pathlib.Path
        ``directory``.
    """
    from diffusers import StableDiffusionDiffEditPipeline

    _seeded(seed)
    tokenizer = _tiny_tokenizer()
    scheduler, inverse = _tiny_schedulers()
    pipe = StableDiffusionDiffEditPipeline(
        vae=_tiny_vae(),
        text_encoder=_tiny_text_encoder(tokenizer),
        tokenizer=tokenizer,
        unet=_tiny_unet(),
        scheduler=scheduler,
        inverse_scheduler=inverse,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(directory))
    return directory


def build_tiny_controlnet(directory: Path, sd_directory: Path, *, seed: int = 1) -> Path:
    """Build a tiny ``ControlNetModel`` matching a saved tiny SD pipeline and save it.

    ControlNet's output convolutions are zero-initialised by design, which would
    make the control image irrelevant; here they get small random weights so
    tests can see that the control image changes the output.

    Parameters
    ----------
    directory : pathlib.Path
        Where to save the ControlNet (created).
    sd_directory : pathlib.Path
        A folder written by :func:`build_tiny_sd_pipeline` (its UNet config is reused).
    seed : int
        Seed for the random weights.

    Returns
    -------
    pathlib.Path
        ``directory``.
    """
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    _seeded(seed)
    unet = UNet2DConditionModel.from_pretrained(str(sd_directory), subfolder="unet")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
    with torch.no_grad():
        zero_convs = list(controlnet.controlnet_down_blocks) + [controlnet.controlnet_mid_block]
        zero_convs.append(controlnet.controlnet_cond_embedding.conv_out)
        for conv in zero_convs:
            conv.weight.normal_(0.0, 0.3)
            conv.bias.normal_(0.0, 0.1)
    controlnet.save_pretrained(str(directory))
    return directory


@dataclass(frozen=True)
class TinyModels:
    """Folders of the tiny models saved for one test session."""

    sd: Path
    diffedit: Path
    controlnet: Path


_BUILT: list[TinyModels] = []


def tiny_models(make_dir: Callable[[], Path]) -> TinyModels:
    """Build the tiny SD pipeline, DiffEdit pipeline and ControlNet once per process.

    Parameters
    ----------
    make_dir : callable
        Returns an empty directory to build into (e.g. ``tmp_path_factory.mktemp``);
        called only on the first use.
    """
    if not _BUILT:
        import torch

        torch.set_num_threads(1)
        root = make_dir()
        sd = build_tiny_sd_pipeline(root / "sd")
        _BUILT.append(
            TinyModels(
                sd=sd,
                diffedit=build_tiny_diffedit_pipeline(root / "diffedit"),
                controlnet=build_tiny_controlnet(root / "controlnet", sd),
            )
        )
    return _BUILT[0]
