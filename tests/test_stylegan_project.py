"""GAN inversion: the loss goes down, batching does not change results, options are honoured."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_scigen.core.progress import Cancelled, CancelToken, drain  # noqa: E402
from napari_scigen.core.validation import InvalidInputError  # noqa: E402
from napari_scigen.engines.stylegan.project import (  # noqa: E402
    DEFAULT_PERCEPTUAL_NAME,
    MultiScaleStructureLoss,
    noise_regularization,
    run_project,
)
from stylegan_tiny import tiny_generator  # noqa: E402

torch.set_num_threads(1)


def _targets(generator, count=3, seed=5):
    """Images the generator can make (so a good projection exists)."""
    z = torch.randn(count, generator.config.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator(z, noise_mode="const")[:, 0].numpy()


def test_projection_lowers_reconstruction_loss_for_every_slice():
    generator = tiny_generator()
    targets = _targets(generator)
    result = drain(run_project(generator, targets, steps=40, batch_size=2))
    assert result.final_loss.shape == (3,)
    assert np.all(result.final_loss < 0.5 * result.initial_loss)
    assert result.loss_history.shape == (40, 3)
    assert result.reconstructions.shape == (3, 16, 16)
    error_before = np.mean(
        (targets - drain(run_project(generator, targets, steps=1)).reconstructions) ** 2
    )
    error_after = np.mean((targets - result.reconstructions) ** 2)
    assert error_after < error_before
    assert result.perceptual == DEFAULT_PERCEPTUAL_NAME


def test_projection_result_does_not_depend_on_batching():
    generator = tiny_generator()
    targets = _targets(generator)
    batched = drain(run_project(generator, targets, steps=15, batch_size=3, seeds=[7, 8, 9]))
    alone = drain(run_project(generator, targets[1:2], steps=15, batch_size=1, seeds=[8]))
    np.testing.assert_allclose(alone.reconstructions[0], batched.reconstructions[1], atol=1e-4)


def test_w_projection_shares_one_latent_across_layers():
    generator = tiny_generator()
    result = drain(run_project(generator, _targets(generator, 2), steps=3, w_plus=False))
    assert result.ws.shape == (2, generator.num_ws, generator.config.w_dim)
    assert torch.equal(result.ws[:, 0], result.ws[:, -1])
    plus = drain(run_project(generator, _targets(generator, 2), steps=3, w_plus=True))
    assert not torch.equal(plus.ws[:, 0], plus.ws[:, -1])


def test_noise_maps_stay_normalised_and_match_layer_shapes():
    generator = tiny_generator()
    result = drain(run_project(generator, _targets(generator, 2), steps=5))
    assert [tuple(m.shape[2:]) for m in result.noise] == generator.synthesis.noise_shapes
    for maps in result.noise:
        assert torch.allclose(maps.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
        assert torch.allclose(maps.square().mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-4)


def test_noise_regularization_penalises_smooth_maps_more_than_white_noise():
    white = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.avg_pool2d(white, 5, stride=1, padding=2)
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert float(noise_regularization([smooth])) > 20 * float(noise_regularization([white]))


def test_custom_perceptual_callable_is_used_and_named():
    generator = tiny_generator()
    calls = []

    def blur_distance(x, y):
        calls.append(x.shape[0])
        return (torch.nn.functional.avg_pool2d(x - y, 4)).abs().mean(dim=(1, 2, 3))

    result = drain(
        run_project(generator, _targets(generator, 2), steps=3, perceptual=blur_distance)
    )
    assert result.perceptual == "blur_distance"
    assert len(calls) >= 3


def test_lpips_net_is_fed_three_channel_images():
    generator = tiny_generator()
    seen = []

    class FakeLpips(torch.nn.Module):
        pnet_type = "alex"

        def forward(self, x, y):
            seen.append(x.shape[1])
            return (x - y).square().mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1)

    result = drain(run_project(generator, _targets(generator, 1), steps=2, lpips_net=FakeLpips()))
    assert set(seen) == {3} and result.perceptual == "lpips (alex)"


def test_structure_loss_is_zero_for_identical_images_and_positive_otherwise():
    loss = MultiScaleStructureLoss()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.allclose(loss(x, x), torch.zeros(2), atol=1e-5)
    assert bool((loss(x, x.flip(-1)) > 0.1).all())


def test_projection_rejects_slices_of_the_wrong_size():
    with pytest.raises(InvalidInputError, match="tile larger slices"):
        drain(run_project(tiny_generator(), np.zeros((2, 20, 20), np.float32), steps=1))


def test_projection_can_be_cancelled():
    cancel = CancelToken()
    cancel.cancel()
    generator = tiny_generator()
    with pytest.raises(Cancelled):
        drain(run_project(generator, _targets(generator, 1), steps=5, cancel=cancel))


def test_projection_leaves_the_generator_untouched():
    generator = tiny_generator()
    generator.requires_grad_(True)
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    drain(run_project(generator, _targets(generator, 1), steps=3))
    assert all(p.requires_grad and p.grad is None for p in generator.parameters())
    for key, value in generator.state_dict().items():
        assert torch.equal(value, before[key]), key
