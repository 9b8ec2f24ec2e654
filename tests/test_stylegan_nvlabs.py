"""Mapping stylegan2-ada-pytorch G_ema state-dict names onto our generator.

No NVlabs weights are available offline, so the file is built from one of our
own generators with the parameter names and shapes the reference code uses
(``mapping.fc<i>``, ``synthesis.b<res>.conv0/conv1/torgb``, 2D ``noise_const``,
``resample_filter`` buffers, ``mapping.w_avg``).
"""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from napari_scigen.engines.stylegan.checkpoint import build_networks  # noqa: E402
from napari_scigen.engines.stylegan.nvlabs import (  # noqa: E402
    LUMINANCE,
    NvlabsImportError,
    import_nvlabs_state_dict,
)
from stylegan_tiny import tiny_config  # noqa: E402

torch.set_num_threads(1)


def _as_nvlabs(generator) -> dict:
    """Rename our state dict to the reference code's names (inverse of the importer)."""
    config = generator.config
    ours = generator.state_dict()
    out = {"mapping.w_avg": ours["w_avg"]}
    for i in range(config.mapping_layers):
        for p in ("weight", "bias"):
            out[f"mapping.fc{i}.{p}"] = ours[f"mapping_network.layers.{i}.{p}"]
    out["synthesis.b4.const"] = ours["synthesis.const"]
    names = [("synthesis.b4.conv1", 0)]
    for log2_res in range(3, config.log2_resolution + 1):
        k = log2_res - 2
        names += [
            (f"synthesis.b{2**log2_res}.conv0", 2 * k - 1),
            (f"synthesis.b{2**log2_res}.conv1", 2 * k),
        ]
    for src, index in names:
        for p in ("weight", "bias", "noise_strength", "affine.weight", "affine.bias"):
            out[f"{src}.{p}"] = ours[f"synthesis.convs.{index}.{p}"]
        out[f"{src}.noise_const"] = ours[f"synthesis.convs.{index}.noise_const"][0, 0]
        out[f"{src}.resample_filter"] = torch.ones(4, 4)
    for k, log2_res in enumerate(range(2, config.log2_resolution + 1)):
        for p in ("weight", "bias", "affine.weight", "affine.bias"):
            out[f"synthesis.b{2**log2_res}.torgb.{p}"] = ours[f"synthesis.to_images.{k}.{p}"]
    return {k: v.clone() for k, v in out.items()}


def test_grayscale_state_dict_imports_exactly(tmp_path):
    source, _ = build_networks(tiny_config(), seed=2, discriminator=False)
    with torch.no_grad():
        source.w_avg.normal_()
        for conv in source.synthesis.convs:
            conv.noise_strength.fill_(0.3)
    path = tmp_path / "g_ema.pt"
    torch.save(_as_nvlabs(source), path)
    imported, meta = import_nvlabs_state_dict(path)
    assert imported.config == source.config
    z = torch.randn(2, source.config.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(
            imported(z, noise_mode="const"), source(z, noise_mode="const"), atol=1e-6
        )
    assert all(k.endswith("resample_filter") for k in meta["source"]["ignored_tensors"])


def test_rgb_generator_is_folded_to_luminance(tmp_path):
    rgb_config = dataclasses.replace(tiny_config(), img_channels=3)
    source, _ = build_networks(rgb_config, seed=4, discriminator=False)
    path = tmp_path / "rgb.pt"
    torch.save(_as_nvlabs(source), path)
    imported, _ = import_nvlabs_state_dict(path)
    assert imported.config.img_channels == 1
    z = torch.randn(3, rgb_config.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        rgb = source(z, noise_mode="const")
        gray = imported(z, noise_mode="const")
    expected = (rgb * torch.tensor(LUMINANCE).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(gray, expected, atol=1e-5)


def test_conditional_or_foreign_state_dicts_are_refused(tmp_path):
    source, _ = build_networks(tiny_config(), seed=2, discriminator=False)
    state = _as_nvlabs(source)
    state["mapping.embed.weight"] = torch.zeros(16, 4)
    torch.save(state, tmp_path / "cond.pt")
    with pytest.raises(NvlabsImportError, match="conditional"):
        import_nvlabs_state_dict(tmp_path / "cond.pt")
    torch.save({"layer.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(NvlabsImportError, match="mapping.fc"):
        import_nvlabs_state_dict(tmp_path / "other.pt")


def test_files_holding_arbitrary_objects_are_not_unpickled(tmp_path):
    import fractions
    import pickle

    path = tmp_path / "object.pt"
    torch.save({"mapping.fc0.weight": fractions.Fraction(1, 3)}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        import_nvlabs_state_dict(path)
