"""StyleGAN2 networks: shapes, determinism, truncation, noise modes, equalized layers."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from napari_scigen.engines.stylegan.checkpoint import build_networks  # noqa: E402
from napari_scigen.engines.stylegan.networks import (  # noqa: E402
    Discriminator,
    Generator,
    StyleGANConfig,
    downsample2x,
    modulated_conv2d,
    upsample2x,
)
from stylegan_tiny import tiny_config, tiny_generator  # noqa: E402

torch.set_num_threads(1)


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_generator_outputs_single_channel_images_of_config_resolution(resolution):
    config = dataclasses.replace(tiny_config(), resolution=resolution)
    generator, disc = build_networks(config, seed=0)
    z = torch.randn(3, config.z_dim)
    images = generator(z)
    assert images.shape == (3, 1, resolution, resolution)
    assert generator.num_ws == 2 * {16: 4, 32: 5, 64: 6}[resolution] - 2
    assert generator.mapping(z).shape == (3, generator.num_ws, config.w_dim)
    assert disc(images).shape == (3, 1)


def test_config_rejects_resolution_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        StyleGANConfig(resolution=48)


def test_same_seed_builds_identical_networks_without_touching_global_rng():
    state = torch.get_rng_state()
    g1, d1 = build_networks(tiny_config(), seed=5)
    g2, d2 = build_networks(tiny_config(), seed=5)
    g3, _ = build_networks(tiny_config(), seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(g1.state_dict().values(), g2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(d1.state_dict().values(), d2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(g1.synthesis.const, g3.synthesis.const)


def test_seeded_random_noise_and_const_noise_are_reproducible():
    generator = tiny_generator()
    z = torch.randn(2, generator.config.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        generator.synthesis.convs[1].noise_strength.fill_(1.0)  # make noise visible
        a = generator(z, generator=torch.Generator().manual_seed(9))
        b = generator(z, generator=torch.Generator().manual_seed(9))
        c = generator(z, generator=torch.Generator().manual_seed(10))
        const1 = generator(z, noise_mode="const")
        const2 = generator(z, noise_mode="const")
        none = generator(z, noise_mode="none")
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(const1, const2)
    assert not torch.equal(const1, none)


def test_truncation_psi_zero_maps_every_latent_to_w_avg():
    generator = tiny_generator()
    with torch.no_grad():
        generator.w_avg.copy_(torch.linspace(-1, 1, generator.config.w_dim))
    ws = generator.mapping(torch.randn(4, generator.config.z_dim), truncation_psi=0.0)
    assert torch.allclose(ws, generator.w_avg.expand_as(ws))


def test_mapping_updates_w_avg_only_when_asked():
    generator = tiny_generator()
    z = torch.randn(8, generator.config.z_dim)
    generator.mapping(z)
    assert torch.count_nonzero(generator.w_avg) == 0
    generator.mapping(z, update_w_avg_beta=0.5)
    expected = generator.mapping_network(z).mean(dim=0) * 0.5
    assert torch.allclose(generator.w_avg, expected, atol=1e-6)


def test_synthesis_rejects_wrong_number_of_styles_and_bad_noise_mode():
    generator = tiny_generator()
    ws = generator.mapping(torch.randn(1, generator.config.z_dim))
    with pytest.raises(ValueError, match="ws must have shape"):
        generator.synthesis(ws[:, :-1])
    with pytest.raises(ValueError, match="noise_mode"):
        generator.synthesis(ws, noise_mode="loud")


def test_demodulated_conv_keeps_unit_variance_for_unit_input():
    torch.manual_seed(0)
    x = torch.randn(4, 32, 24, 24)
    weight = torch.randn(16, 32, 3, 3)
    styles = torch.rand(4, 32) * 3 + 0.1
    out = modulated_conv2d(x, weight, styles, demodulate=True)
    assert out.shape == (4, 16, 24, 24)
    assert abs(float(out[:, :, 2:-2, 2:-2].std()) - 1.0) < 0.1


def test_resampling_applies_binomial_filter_and_preserves_constants():
    constant = torch.full((1, 1, 8, 8), 3.0)
    assert torch.allclose(upsample2x(constant), torch.full((1, 1, 16, 16), 3.0))
    assert torch.allclose(downsample2x(constant), torch.full((1, 1, 4, 4), 3.0))
    impulse = torch.zeros(1, 1, 8, 8)
    impulse[0, 0, 3, 3] = 1.0
    row = downsample2x(impulse)[0, 0, 1]  # output row covering input rows 2..5
    # the [1, 3, 3, 1] / 8 filter: input 3 is the second tap of output 1 (weight 3/8)
    assert torch.isclose(row[1], torch.tensor(9 / 64))


def test_discriminator_minibatch_stddev_sees_batch_diversity():
    config = tiny_config()
    disc = Discriminator(config)
    same = torch.randn(1, 1, 16, 16).repeat(4, 1, 1, 1)
    features = disc.from_image(same)
    for block in disc.blocks:
        features = block(features)
    stats = disc.minibatch_stddev(features)[:, -1]
    assert torch.allclose(stats, torch.full_like(stats, 1e-4), atol=1e-5)


def test_generator_is_an_nn_module_with_tracked_w_avg_buffer():
    generator = Generator(tiny_config())
    assert "w_avg" in dict(generator.named_buffers())
    assert any(name.endswith("noise_const") for name, _ in generator.named_buffers())
