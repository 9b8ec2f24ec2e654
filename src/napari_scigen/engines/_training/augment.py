"""Differentiable augmentation for training GANs on small datasets.

Follows the idea of DiffAugment (Zhao et al. 2020, "Differentiable Augmentation
for Data-Efficient GAN Training"): the *same kind* of random, differentiable
transform is applied to real and generated images before the discriminator sees
them, so the discriminator cannot memorise a small training set while the
generator still learns the un-augmented distribution. Written for grayscale
microCT slices: brightness, contrast, translation (zero padded) and cutout.

Separately, :func:`random_dihedral` applies flips/90-degree rotations to *real*
slices only, a dataset augmentation that is valid for in-plane isotropic
materials (rocks, most composites seen along the fibre axis).
"""

from __future__ import annotations

import torch

#: The augmentations :func:`diff_augment` applies, in order.
DIFF_AUGMENT_POLICY = ("brightness", "contrast", "translation", "cutout")


def _uniform(batch: int, generator: torch.Generator | None, device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(batch, 1, 1, 1, generator=generator, device=gen_device).to(device)


def diff_augment(
    images: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    policy: tuple[str, ...] = DIFF_AUGMENT_POLICY,
    translation_ratio: float = 0.125,
    cutout_ratio: float = 0.25,
) -> torch.Tensor:
    """Randomly augment a batch ``(N, C, H, W)`` in a way gradients pass through.

    Parameters
    ----------
    images : torch.Tensor
        Images in ``[-1, 1]``.
    generator : torch.Generator, optional
        Source of randomness (for reproducible training).
    policy : tuple of str
        Subset of :data:`DIFF_AUGMENT_POLICY`.
    translation_ratio : float
        Largest shift as a fraction of the image size.
    cutout_ratio : float
        Side of the zeroed square as a fraction of the image size.

    Returns
    -------
    torch.Tensor
        Augmented images, same shape.
    """
    unknown = set(policy) - set(DIFF_AUGMENT_POLICY)
    if unknown:
        raise ValueError(
            f"unknown augmentation(s) {sorted(unknown)}; choose from {DIFF_AUGMENT_POLICY}"
        )
    x = images
    batch, _, height, width = x.shape
    device = x.device
    if "brightness" in policy:
        x = x + (_uniform(batch, generator, device) - 0.5) * 0.5
    if "contrast" in policy:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (_uniform(batch, generator, device) + 0.5) + mean
    if "translation" in policy:
        x = _translate(x, translation_ratio, generator)
    if "cutout" in policy:
        x = _cutout(x, cutout_ratio, generator)
    return x


def _randint(low: int, high: int, batch: int, generator: torch.Generator | None) -> torch.Tensor:
    gen_device = generator.device if generator is not None else "cpu"
    return torch.randint(low, high, (batch,), generator=generator, device=gen_device).cpu()


def _translate(x: torch.Tensor, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
    batch, _, height, width = x.shape
    max_dy, max_dx = int(height * ratio + 0.5), int(width * ratio + 0.5)
    if max_dy == 0 and max_dx == 0:
        return x
    shift_y = _randint(-max_dy, max_dy + 1, batch, generator).to(x.device)
    shift_x = _randint(-max_dx, max_dx + 1, batch, generator).to(x.device)
    # Gather from a zero-padded copy: output[i, j] = padded[i - dy + pad, j - dx + pad].
    padded = torch.nn.functional.pad(x, [max_dx, max_dx, max_dy, max_dy])
    rows = (
        torch.arange(height, device=x.device).reshape(1, height, 1)
        - shift_y.reshape(-1, 1, 1)
        + max_dy
    )
    cols = (
        torch.arange(width, device=x.device).reshape(1, 1, width)
        - shift_x.reshape(-1, 1, 1)
        + max_dx
    )
    batch_index = torch.arange(batch, device=x.device).reshape(-1, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch_index, rows, cols]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
    batch, _, height, width = x.shape
    size_y, size_x = max(1, int(height * ratio + 0.5)), max(1, int(width * ratio + 0.5))
    centre_y = _randint(0, height, batch, generator).to(x.device)
    centre_x = _randint(0, width, batch, generator).to(x.device)
    rows = torch.arange(height, device=x.device).reshape(1, height, 1)
    cols = torch.arange(width, device=x.device).reshape(1, 1, width)
    inside_y = (rows - centre_y.reshape(-1, 1, 1)).abs() < (size_y + 1) // 2
    inside_x = (cols - centre_x.reshape(-1, 1, 1)).abs() < (size_x + 1) // 2
    keep = ~(inside_y & inside_x)
    return x * keep.unsqueeze(1).to(x.dtype)


def random_dihedral(
    images: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply one of the 8 flips/90-degree rotations, chosen per image (for real slices)."""
    batch = images.shape[0]
    choice = _randint(0, 8, batch, generator).tolist()
    out = []
    for image, k in zip(images, choice, strict=True):
        if k >= 4:
            image = image.flip(-1)
        out.append(torch.rot90(image, k % 4, dims=(-2, -1)))
    return torch.stack(out)
