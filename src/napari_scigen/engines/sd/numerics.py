"""Numbers in and out of the model: grayscale <-> RGB, batch-invariant numerics, decoding.

A slice's result must not depend on the batch it runs in (the widget's current slice
and a batched volume run give the same pixels). On CPU, :func:`batch_invariant_numerics`
switches off the batch-dependent code paths found in PyTorch/MKL, and
:func:`decode_latents_one_by_one` decodes latents item by item, since the VAE decoder
is batch-dependent too. torch is imported lazily inside functions.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np


def gray_to_rgb(units: np.ndarray) -> np.ndarray:
    """``(B, H, W)`` values in [0, 1] -> ``(B, H, W, 3)`` float32 (channel replicated)."""
    units = np.asarray(units, dtype=np.float32)
    return np.repeat(units[..., None], 3, axis=-1)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` model output in [0, 1] -> grayscale (mean of channels), float32."""
    return np.asarray(rgb, dtype=np.float32)[..., :3].mean(axis=-1)


#: 2D ``linear`` inputs with at most this many rows are computed row by row on CPU.
SMALL_LINEAR_ROWS = 256


def _split_call(func, args, kwargs):
    """``func`` applied to each item of its first argument's batch, concatenated."""
    import torch

    items = args[0].split(1)
    return torch.cat([func(item, *args[1:], **kwargs) for item in items])


def _batch_invariant_mode():
    """A torch function mode computing convolutions and ``F.linear`` item by item.

    2D ``linear`` inputs of at most :data:`SMALL_LINEAR_ROWS` rows go one row at a time,
    inputs of 3 or more dimensions and ``conv2d`` one batch item at a time, so each
    item's numbers come from the same kernel calls whatever the batch.
    """
    import torch
    import torch.nn.functional as functional
    from torch.overrides import TorchFunctionMode

    class BatchInvariant(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            first = args[0] if args else None
            if isinstance(first, torch.Tensor) and first.dim() >= 2 and first.shape[0] > 1:
                if func is functional.linear and (
                    first.dim() > 2 or first.shape[0] <= SMALL_LINEAR_ROWS
                ):
                    return _split_call(func, args, kwargs)
                if func is functional.conv2d and first.dim() == 4:
                    return _split_call(func, args, kwargs)
            return func(*args, **kwargs)

    return BatchInvariant()


@contextmanager
def batch_invariant_numerics(device: str):
    """Make a slice's numbers independent of the batch it runs in (CPU only).

    Measured here (torch 2.14 CPU, MKL + oneDNN), a slice's UNet output changed by
    1e-7..1e-6 with the batch it ran in, enough to flip the last bit of some
    uint16 results. Three causes, all fixed inside this block:

    - oneDNN (mkldnn) chooses convolution algorithms by input shape, batch included:
      it is disabled, so PyTorch's native, batch-invariant convolutions run
      (about 1.4x slower on SD-sized convolutions; CPU runs are slow anyway);
    - MKL's sgemm gives different last bits for a row depending on how many rows
      the matrix has when it is small (the timestep-embedding ``Linear`` layers see
      ``2 x batch`` rows): 2D ``F.linear`` calls with at most
      :data:`SMALL_LINEAR_ROWS` rows are computed one row at a time (negligible cost);
    - PyTorch's native convolution changes path with the batch size too (measured: the
      tiny test UNet's ``conv_in`` differs from batch 16 on, with oneDNN off): ``conv2d``
      and ``F.linear`` on 3D+ inputs (attention projections) run one batch item at a
      time. Batching then saves the per-call overhead only, on CPU.

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
        with _batch_invariant_mode():
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
