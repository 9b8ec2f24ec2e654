"""Batch-invariant numerics on CPU: an item's UNet output does not depend on its batch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from napari_scigen.engines.sd.numerics import batch_invariant_numerics  # noqa: E402
from tiny_sd import _seeded, _tiny_unet  # noqa: E402


def test_a_unet_item_is_bit_identical_alone_and_in_a_batch_of_32():
    torch.set_num_threads(1)
    _seeded(0)
    unet = _tiny_unet()
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(32, 4, 8, 8, generator=generator)
    text = torch.randn(32, 16, 16, generator=generator)

    def first_two(count):
        with torch.no_grad(), batch_invariant_numerics("cpu"):
            output = unet(latents[:count], 500, encoder_hidden_states=text[:count]).sample
        return output[:2]

    alone = first_two(2)  # one slice with classifier-free guidance
    for count in (3, 16, 32):  # oneDNN, MKL and the native convolution all changed with these
        assert torch.equal(first_two(count), alone), count
