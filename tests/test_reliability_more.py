"""More bad inputs on the newer surfaces (issue 20, remaining cases).

Each row of :data:`CASES` is run as the tables of :mod:`_reliability` are: one command
on a folder of inputs, exit 2, one line on stderr without a traceback, every file under the
folder unchanged (sha256) and nothing left behind. The rows cover ``--uncertainty-out``
(both outputs or neither), ``validate -o`` into a read-only folder and into, around or
inside the input, learned-engine checkpoints whose ``step`` or random-generator state was
edited, and NaN/infinite values in a slice that ``batch`` rebuilds (refused before any
chunk, like the single-process command).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("zarr", minversion="3")
pytest.importorskip("distributed")  # the batch rows

from _reliability import Case, run_case  # noqa: E402
from napari_scigen.cli import main  # noqa: E402

_LEARNED = ["--method", "learned", "--init", "scratch", "--train-steps", "4", "--crop-size", "16"]
_LEARNED += ["--batch-size", "2", "--base-channels", "8", "--tta", "2", "--threads", "1", "-q"]


def _interpolate(*extra: str) -> tuple[str, ...]:
    return ("interpolate", "{d}/v.tif", "--missing", "3", "-o", "{d}/out/o.tif", *extra)


def _fake_learned_result(monkeypatch, d, uncertainty):
    """``api.interpolate`` returns the input with the given uncertainty map (no training)."""
    from napari_scigen import api

    real = api.interpolate

    def interpolate(data, **kwargs):
        result = real(data, method="linear", missing=kwargs["missing"])
        if uncertainty is not None:
            result.images["uncertainty"] = uncertainty(np.asarray(result.data).shape)
        return result

    monkeypatch.setattr(api, "interpolate", interpolate)


def _no_map(monkeypatch, d) -> None:
    _fake_learned_result(monkeypatch, d, None)


def _nan_map(monkeypatch, d) -> None:
    _fake_learned_result(monkeypatch, d, lambda shape: np.full(shape, np.nan, np.float32))


def _disk_full_on_the_map(monkeypatch, d) -> None:
    import errno

    _fake_learned_result(monkeypatch, d, lambda shape: np.zeros(shape, np.float32))
    from napari_scigen.core.io import write as write_module

    real = write_module._write_tiff

    def write(file, *args, **kwargs):
        if "u.tif" in str(file):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(write_module, "_write_tiff", write)


def _read_only_out(monkeypatch, d) -> None:
    """``out/`` is read-only (as :func:`os.access` says; root ignores permission bits)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != d / "out" and real_access(p, mode))


def _slice_folder(d: Path) -> None:
    """Setup: ``sl/``, the first four slices of ``v.tif`` as one file each."""
    import tifffile

    from napari_scigen.core.io import read_volume

    (d / "sl").mkdir()
    for index, plane in enumerate(read_volume(d / "v.tif").data[:4]):
        tifffile.imwrite(d / "sl" / f"s{index:03d}.tif", plane)


def _learned_checkpoint(edit):
    """Setup: a real learned-engine checkpoint of ``v.tif`` in ``ck/``, then ``edit`` applied."""

    def make(d: Path) -> None:
        argv = ["interpolate", str(d / "v.tif"), "--missing", "3", "-o", str(d / "first.tif")]
        assert main([*argv, *_LEARNED, "--checkpoint-dir", str(d / "ck")]) == 0
        json_path = next((d / "ck").glob("checkpoint-*/checkpoint.json"))
        record = json.loads(json_path.read_text())
        edit(record)
        json_path.write_text(json.dumps(record))

    return make


def _set(key, value):
    return lambda record: record.update({key: value})


_RESUME = ("--checkpoint-dir", "{d}/ck")


def _stylegan_declaring(**declared):
    """Setup: a tiny exported StyleGAN generator ``g.safetensors`` whose JSON declares more."""

    def make(d: Path) -> None:
        from napari_scigen.engines.stylegan.checkpoint import save_generator
        from stylegan_tiny import tiny_generator

        save_generator(tiny_generator(), d / "g.safetensors", {"window": [0.0, 1.0]})
        record = json.loads((d / "g.json").read_text())
        record["config"].update(declared)
        (d / "g.json").write_text(json.dumps(record))

    return make


def _float_volume_with(*values):
    """Setup: ``f.tif``, a float32 copy of ``v.tif`` with ``(z, y, x, value)`` set."""

    def make(d: Path) -> None:
        from napari_scigen.core.io import read_volume, write_volume

        volume = read_volume(d / "v.tif").data.astype(np.float32)
        for z, y, x, value in values:
            volume[z, y, x] = value
        write_volume(d / "f.tif", volume)

    return make


def _batch_f(*extra: str) -> tuple[str, ...]:
    return ("batch", "interpolate", "linear", "{d}/f.tif", "--missing", "3", "-o", "{d}/out/b.ome.zarr", "--workers", "1", "--dashboard", "off", "-q", *extra)  # fmt: skip


_SAMPLE = ("sample-stylegan", "--generator", "{d}/g.safetensors", "-n", "1", "-o", "{d}/out/s.tif", "-q")  # fmt: skip

CASES = [
    # --uncertainty-out: checked before any work, and both outputs or neither
    Case("uncertainty-out-from-an-engine-without-one", _interpolate("--uncertainty-out", "{d}/out/u.tif", "-q"), "returns no uncertainty map"),
    Case("uncertainty-out-with-no-uncertainty", _interpolate(*_LEARNED, "--no-uncertainty", "--uncertainty-out", "{d}/out/u.tif"), "drop --no-uncertainty"),
    Case("uncertainty-map-missing-after-the-run", _interpolate(*_LEARNED, "--uncertainty-out", "{d}/out/u.tif"), "nothing was written", patch=_no_map),
    Case("uncertainty-map-holds-nan", _interpolate(*_LEARNED, "--uncertainty-out", "{d}/out/u.tif"), "NaN/infinite", patch=_nan_map),
    Case("uncertainty-map-on-a-full-disk", _interpolate(*_LEARNED, "--uncertainty-out", "{d}/out/u.tif"), "disk is full", patch=_disk_full_on_the_map),
    # validate -o into a folder that cannot be written: refused before the benchmark
    Case("validate-into-a-read-only-folder", ("validate", "{d}/v.tif", "-o", "{d}/out", "-q"), "not writable", patch=_read_only_out),
    Case("validate-creating-a-folder-in-a-read-only-one", ("validate", "{d}/v.tif", "-o", "{d}/out/new/report", "-q"), "not writable", patch=_read_only_out),
    # validate -o never is, holds or sits inside the input (a file or a folder of slices)
    Case("validate-into-the-input-file", ("validate", "{d}/v.tif", "-o", "{d}/v.tif", "-q"), "is the input"),
    Case("validate-into-the-input-slice-folder", ("validate", "{d}/sl", "-o", "{d}/sl", "-q"), "is the input", setup=_slice_folder),
    Case("validate-inside-the-input-slice-folder", ("validate", "{d}/sl", "-o", "{d}/sl/report", "-q"), "is inside the input slice folder", setup=_slice_folder),
    Case("validate-into-a-folder-holding-the-input", ("validate", "{d}/sl", "-o", "{d}", "-q"), "contains the input", setup=_slice_folder),
    # crafted learned-engine checkpoints: a user error naming the file
    Case("learned-checkpoint-step-is-text", _interpolate(*_LEARNED, *_RESUME), "'step' must be a whole number >= 0", setup=_learned_checkpoint(_set("step", "four"))),
    Case("learned-checkpoint-step-is-negative", _interpolate(*_LEARNED, *_RESUME), "'step' must be a whole number >= 0", setup=_learned_checkpoint(_set("step", -3))),
    Case("learned-checkpoint-step-is-a-fraction", _interpolate(*_LEARNED, *_RESUME), "'step' must be a whole number >= 0", setup=_learned_checkpoint(_set("step", 2.5))),
    Case("learned-checkpoint-rng-garbage", _interpolate(*_LEARNED, *_RESUME), "random-generator state is missing or damaged", setup=_learned_checkpoint(_set("rng_state", "garbage"))),
    Case("learned-checkpoint-rng-of-another-generator", _interpolate(*_LEARNED, *_RESUME), "random-generator state is missing or damaged", setup=_learned_checkpoint(_set("rng_state", {"bit_generator": "MT19937", "state": {}}))),
    # a NaN/inf in a slice that batch rebuilds: refused before any chunk, as interpolate does
    Case("interpolate-nan-in-a-missing-slice", ("interpolate", "{d}/f.tif", "--missing", "3", "-o", "{d}/out/o.tif", "-q"), "contains 1 NaN/infinite value(s)", setup=_float_volume_with((3, 5, 5, np.nan))),
    Case("batch-nan-in-a-missing-slice", _batch_f(), "contains 1 NaN/infinite value(s)", setup=_float_volume_with((3, 5, 5, np.nan))),
    Case("batch-inf-in-a-missing-slice-of-one-of-four-chunks", _batch_f("--chunk-slices", "4"), "volume (slices 0-3) contains 1 NaN/infinite value(s)", setup=_float_volume_with((3, 5, 5, np.inf))),
    Case("batch-inf-in-a-kept-slice-of-another-chunk", _batch_f("--chunk-slices", "4"), "volume (slices 8-11) contains 1 NaN/infinite value(s)", setup=_float_volume_with((9, 0, 0, -np.inf))),
    Case("batch-factor-nan-in-a-kept-slice-of-a-later-chunk", ("batch", "interpolate", "linear", "{d}/f.tif", "--factor", "2", "-o", "{d}/out/b.ome.zarr", "--chunk-slices", "4", "--workers", "1", "--dashboard", "off", "-q"), "NaN/infinite", setup=_float_volume_with((13, 0, 0, np.nan))),
    # a StyleGAN config declaring a huge network: refused from its numbers, nothing allocated
    Case("stylegan-config-huge-channels", _SAMPLE, "declares a generator of about", setup=_stylegan_declaring(channel_base=2**30, channel_max=2**20)),
    Case("stylegan-config-huge-style", _SAMPLE, "declares a generator of about", setup=_stylegan_declaring(z_dim=10**6, w_dim=10**6)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_input_gets_one_line_and_changes_nothing(case, inputs, capfd, monkeypatch):
    run_case(case, inputs, capfd, monkeypatch)


def test_uncertainty_out_writes_both_files_with_the_message_naming_the_output(
    inputs,
    monkeypatch,
    capsys,
):
    _fake_learned_result(monkeypatch, inputs, lambda shape: np.ones(shape, np.float32))
    argv = [
        a.format(d=inputs) for a in _interpolate(*_LEARNED, "--uncertainty-out", "{d}/out/u.tif")
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"wrote {inputs / 'out' / 'o.tif'}" in out and "partial" not in out
    assert {p.name for p in (inputs / "out").glob("*.tif")} == {"o.tif", "u.tif"}
    assert not list((inputs / "out").glob(".*"))


_DIFFUSERS_SHAPE_ERRORS = [
    ValueError("Cannot load /m/unet because conv_in.weight expected shape torch.Size([32, 4, 3, 3]), but got torch.Size([8, 4, 3, 3]). If you want to instead overwrite randomly initialized weights, please make sure to pass both `low_cpu_mem_usage=False` and `ignore_mismatched_sizes=True`."),
    ValueError("Cannot load conv_in.weight because it has shape (8, 4, 3, 3) in the checkpoint but shape (32, 4, 3, 3) in UNet2DConditionModel. Pass `ignore_mismatched_sizes=True` to skip it and keep the randomly initialized weight."),
    RuntimeError("Error(s) in loading state_dict for UNet2DConditionModel:\n\tsize mismatch for conv_in.weight: copying a param with shape torch.Size([8, 4, 3, 3]) from checkpoint, the shape in current model is torch.Size([32, 4, 3, 3]).\n\tYou may consider adding `ignore_mismatched_sizes=True` in the model `from_pretrained` method."),
]  # fmt: skip


@pytest.mark.parametrize("error", _DIFFUSERS_SHAPE_ERRORS, ids=["meta-load", "safetensors-slice", "state-dict"])  # fmt: skip
@pytest.mark.parametrize("is_local", [True, False], ids=["local-folder", "cached-hub-model"])
def test_unet_weights_of_the_wrong_shape_say_download_again_without_diffusers_advice(
    error, is_local
):
    from napari_scigen.core.models import ModelNotAvailableError
    from napari_scigen.engines.sd.hub import ModelSource, load_from_source

    def load(location, flags):
        raise error

    source = ModelSource("m", "/m" if is_local else "org/m", is_local, True, True)
    with pytest.raises(ModelNotAvailableError) as raised:
        load_from_source(source, load, what="Stable Diffusion")
    message = str(raised.value)
    assert "weights do not match its config (conv_in.weight has another shape)" in message
    assert "download the model again" in message and "\n" not in message
    assert "ignore_mismatched_sizes" not in message
