"""Bad inputs and faults through the command line: a clear answer, never data loss (issue 12).

Every row of :data:`CASES` runs one command on a folder of inputs and asserts

* the exit status (2: user error, 1: unexpected error, 143: SIGTERM) and a fragment of
  the one-line message on stderr, with no traceback;
* the exception class (the same command again with ``--debug`` re-raises it);
* that every input file is unchanged (hash) and that no file was left behind.

Faults a test cannot cause for real on a CI machine running as root (permissions, a full
disk, little memory, SIGTERM mid-write) are simulated by patching the one call that
would fail. Property-based tests at the end fuzz the slice-index grammar and TIFF
headers: whatever the input, the answer is a result or an ``InvalidInputError``.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _reliability import crafted_tiff, tree_state
from napari_scigen.cli import CliError, main
from napari_scigen.core.io import NotEnoughMemoryError, read_volume, write_volume
from napari_scigen.core.models import ModelNotAvailableError
from napari_scigen.core.validation import InvalidInputError

torch = pytest.importorskip("torch")
from napari_scigen.engines.stylegan.checkpoint import (  # noqa: E402
    CheckpointError,
    build_networks,
    save_checkpoint,
    save_generator,
)
from stylegan_tiny import tiny_config  # noqa: E402

# ---------------------------------------------------------------------------------------
# the inputs
# ---------------------------------------------------------------------------------------


def _deflate_bomb(path: Path, side: int = 100_000) -> None:
    """A ~140-byte TIFF whose one deflate strip claims ``side`` x ``side`` uint8 pixels."""
    crafted_tiff(path, side, 8, zlib.compress(b"\0" * 64))


def _sd_folder(path: Path, *, tokenizer: bool, unet_weights: bool) -> None:
    """A local Stable Diffusion folder missing a component (no diffusers needed to build)."""
    path.mkdir()
    index = {"_class_name": "StableDiffusionPipeline", "safety_checker": [None, None]}
    index.update(tokenizer=["transformers", "CLIPTokenizer"], unet=["diffusers", "UNet2D"])
    (path / "model_index.json").write_text(json.dumps(index))
    (path / "unet").mkdir()
    (path / "unet" / "config.json").write_text("{}")
    if unet_weights:
        (path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    if tokenizer:
        (path / "tokenizer").mkdir()
        (path / "tokenizer" / "tokenizer.json").write_text("{}")


#: The components of a Stable unCLIP (img2img) pipeline folder: (library, class, files).
_UNCLIP_COMPONENTS = {
    "unet": ("diffusers", "UNet2DConditionModel", ("config.json", "diffusion_pytorch_model.safetensors")),
    "vae": ("diffusers", "AutoencoderKL", ("config.json", "diffusion_pytorch_model.safetensors")),
    "text_encoder": ("transformers", "CLIPTextModel", ("config.json", "model.safetensors")),
    "tokenizer": ("transformers", "CLIPTokenizer", ("vocab.json", "merges.txt")),
    "scheduler": ("diffusers", "DDIMScheduler", ("scheduler_config.json",)),
    "image_encoder": ("transformers", "CLIPVisionModelWithProjection", ("config.json", "model.safetensors")),
    "feature_extractor": ("transformers", "CLIPImageProcessor", ("preprocessor_config.json",)),
    "image_normalizer": ("diffusers", "StableUnCLIPImageNormalizer", ("config.json", "diffusion_pytorch_model.safetensors")),
    "image_noising_scheduler": ("diffusers", "DDPMScheduler", ("scheduler_config.json",)),
}  # fmt: skip


def _unclip_folder(path: Path, *, leave_out: tuple[str, ...] = ()) -> Path:
    """A Stable unCLIP folder layout without the files named in ``leave_out`` ("comp/file")."""
    index = {"_class_name": "StableUnCLIPImg2ImgPipeline", "_diffusers_version": "0.30.0"}
    for name, (library, class_name, files) in _UNCLIP_COMPONENTS.items():
        index[name] = [library, class_name]
        if name in leave_out:
            continue
        (path / name).mkdir(parents=True)
        for file in files:
            if f"{name}/{file}" not in leave_out:
                (path / name / file).write_text("{}")
    (path / "model_index.json").write_text(json.dumps(index))
    return path


class _Payload:
    """Unpickling this would run code: it must never happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _stylegan_files(d: Path) -> None:
    from safetensors.torch import load_file, save_file

    generator, _ = build_networks(tiny_config(), seed=0, discriminator=False)
    meta = {"window": {"low": 0.0, "high": 1.0, "dtype": "float32"}}
    for name in ("nan", "wrong", "pickle"):
        save_generator(generator, d / f"{name}.safetensors", meta)
    tensors = load_file(str(d / "nan.safetensors"))
    save_file(
        {k: torch.full_like(v, float("nan")) for k, v in tensors.items()},
        str(d / "nan.safetensors"),
        metadata={"format": "napari-scigen-stylegan/1"},
    )
    first = next(k for k, v in tensors.items() if v.ndim == 2)
    save_file({**tensors, first: torch.zeros(3, 3)}, str(d / "wrong.safetensors"))
    (d / "pickle.safetensors").write_bytes(pickle.dumps({"a": 1}))
    (d / "empty_run").mkdir()
    broken = d / "badjson_run" / "checkpoint-0000001"
    broken.mkdir(parents=True)
    (broken / "checkpoint.json").write_text("{not json")
    (broken / "networks.safetensors").write_bytes(b"")
    G, D = build_networks(tiny_config(), seed=0)
    G_ema, _ = build_networks(tiny_config(), seed=0, discriminator=False)
    checkpoint = save_checkpoint(
        d / "evil_run",
        step=1,
        generator=G,
        generator_ema=G_ema,
        discriminator=D,
        metadata={"config": tiny_config().to_dict(), "window": meta["window"], "seed": 0},
    )
    (checkpoint / "train_state.pt").write_bytes(pickle.dumps(_Payload(d.parent / "PWNED")))


def make_inputs(d: Path) -> None:
    """Every input file a case may use."""
    rng = np.random.default_rng(0)
    volume = (1000 + rng.integers(0, 5000, (10, 32, 40))).astype(np.uint16)
    write_volume(d / "v.tif", volume, voxel_size=(4.0, 2.0, 2.0))
    (d / "slices").mkdir()
    for z in range(4):
        tifffile.imwrite(d / "slices" / f"s{z}.tif", volume[z])
    mask = np.zeros(volume.shape, np.uint8)
    mask[:, 10:20, 10:20] = 1
    tifffile.imwrite(d / "m.tif", mask)
    nan_mask = mask.astype(np.float32)
    nan_mask[0, 0, 0] = np.nan
    tifffile.imwrite(d / "m_nan.tif", nan_mask)
    nan_outside = volume.astype(np.float32)
    nan_outside[0, 0, 0] = np.nan
    tifffile.imwrite(d / "v_nan_outside.tif", nan_outside)
    tifffile.imwrite(d / "mixed.tif", volume[:4], photometric="minisblack")
    tifffile.imwrite(d / "mixed.tif", volume[:4, :16, :16], photometric="minisblack", append=True)
    _deflate_bomb(d / "bomb.tif")
    tifffile.imwrite(d / "big.tif", np.zeros((20, 256, 256), np.uint16), compression="zlib")
    write_volume(d / "one.tif", volume[:1], voxel_size=(7.0, 2.0, 2.0))
    tifffile.imwrite(d / "slice2d.tif", volume[0])
    rgb = rng.integers(0, 255, (4, 32, 40, 3), dtype=np.uint8)
    tifffile.imwrite(d / "rgb.tif", rgb, photometric="rgb")
    write_volume(d / "two.tif", volume[:2])
    record = {"format": 1, "kind": "image", "voxel_size": [1.0, 1.0, 1.0], "unit": "\u5fae\u7c73"}
    tifffile.imwrite(d / "unit.tif", volume, metadata={"napari_scigen": record})
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (d / "out_dir").mkdir()
    (d / "demo").mkdir()
    (d / "demo" / "rock.tif").write_bytes(b"the user's own rock")
    (d / "existing.tif").write_bytes(b"an earlier result")
    os.link(d / "v.tif", d / "v_hardlink.tif")
    (d / "v_symlink.tif").symlink_to(d / "v.tif")
    _sd_folder(d / "sd_no_tokenizer", tokenizer=False, unet_weights=True)
    _sd_folder(d / "sd_no_unet_weights", tokenizer=True, unet_weights=False)
    _unclip_folder(d / "unclip_no_feature_extractor", leave_out=("feature_extractor",))
    _unclip_folder(d / "unclip_no_image_encoder_weights", leave_out=("image_encoder/model.safetensors",))  # fmt: skip
    _stylegan_files(d)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad_inputs_template") / "in"
    d.mkdir()
    make_inputs(d)
    return d


@pytest.fixture
def inputs(template, tmp_path, monkeypatch) -> Path:
    import shutil

    d = tmp_path / "in"
    shutil.copytree(template, d, symlinks=True)
    (d / "v_hardlink.tif").unlink()
    os.link(d / "v.tif", d / "v_hardlink.tif")
    (d / "v_symlink.tif").unlink()
    (d / "v_symlink.tif").symlink_to(d / "v.tif")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("NAPARI_SCIGEN_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return d


# ---------------------------------------------------------------------------------------
# the faults that need patching
# ---------------------------------------------------------------------------------------


def _little_memory(monkeypatch, d) -> None:
    monkeypatch.setattr("napari_scigen.core.io.memory.available_memory_bytes", lambda: 2**20)


def _unreadable(monkeypatch, d) -> None:
    original = tifffile.TiffFile.__init__

    def init(self, file, *args, **kwargs):
        if Path(str(file)).name == "v.tif":
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        original(self, file, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffFile, "__init__", init)


def _read_only_folder(monkeypatch, d) -> None:
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: Path(p) != d / "out_dir" and real_access(p, mode)
    )


def _read_only_mount(monkeypatch, d) -> None:
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(d / "out_dir"))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)


def _disk_full(monkeypatch, d) -> None:
    def write(file, *args, **kwargs):
        Path(file).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("napari_scigen.core.io.write._write_tiff", write)


def _sigterm_while_writing(monkeypatch, d) -> None:
    def write(file, *args, **kwargs):
        Path(file).write_bytes(b"half a file")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here

    monkeypatch.setattr("napari_scigen.core.io.write._write_tiff", write)


def _engine_bug(monkeypatch, d) -> None:
    def broken(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr("napari_scigen.api.interpolate", broken)


def _engine_names_an_api_argument(monkeypatch, d) -> None:
    def refuse(*args, **kwargs):
        raise InvalidInputError("the checkpoint was made for another volume; or resume=False")

    monkeypatch.setattr("napari_scigen.api.interpolate", refuse)


def _engine_out_of_memory(monkeypatch, d) -> None:
    def broken(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr("napari_scigen.api.interpolate", broken)


# ---------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: the command, what it must answer, and the fault to simulate."""

    id: str
    argv: Callable[[Path], list[str]]
    fragment: str
    error: type[BaseException] | None
    code: int = 2
    setup: Callable | None = None
    extra: tuple[str, ...] = field(default=())


def _interpolate(*args: str) -> Callable[[Path], list[str]]:
    return lambda d: ["interpolate", str(d / "v.tif"), "--missing", "3", *[a.format(d=d) for a in args], "-q"]  # fmt: skip


def _inpaint(source: str, mask: str, *args: str) -> Callable[[Path], list[str]]:
    return lambda d: ["inpaint", str(d / source), "--mask", str(d / mask), "-o", str(d / "out_dir" / "o.tif"), *args, "-q"]  # fmt: skip


def _cmd(*args: str) -> Callable[[Path], list[str]]:
    return lambda d: [a.format(d=d) for a in args]


CASES = [
    # 1. an output is never an input, --overwrite or not
    Case("output-is-the-input", _interpolate("-o", "{d}/v.tif", "--overwrite"), "is the input", CliError),
    Case("output-is-the-mask", _cmd("inpaint", "{d}/v.tif", "--mask", "{d}/m.tif", "-o", "{d}/m.tif", "--overwrite"), "is the input", CliError),
    Case("output-in-slice-folder", _cmd("interpolate", "{d}/slices", "--missing", "1", "-o", "{d}/slices/s1.tif", "--overwrite"), "inside the input slice folder", CliError),
    Case("new-output-in-slice-folder", _cmd("interpolate", "{d}/slices", "--missing", "1", "-o", "{d}/slices/s9.tif"), "inside the input slice folder", CliError),
    Case("output-is-a-hard-link", _interpolate("-o", "{d}/v_hardlink.tif", "--overwrite"), "is the input", CliError),
    Case("output-is-a-symlink", _interpolate("-o", "{d}/v_symlink.tif", "--overwrite"), "is the input", CliError),
    Case("output-via-dotdot", _interpolate("-o", "{d}/out_dir/../v.tif", "--overwrite"), "is the input", CliError),
    Case("existing-output", _interpolate("-o", "{d}/existing.tif"), "pass --overwrite", CliError),
    Case("save-mask-is-output", _cmd("diffedit", "{d}/v.tif", "--mask", "{d}/m.tif", "--prompt", "x", "-o", "{d}/out_dir/a.tif", "--save-mask", "{d}/out_dir/a.tif"), "name the same file", CliError),
    # 2. demo asks before replacing files
    Case("demo-existing-files", _cmd("demo", "-o", "{d}/demo", "-q"), "already holds rock.tif", CliError),
    Case("demo-every-1", _cmd("demo", "-o", "{d}/out_dir/demo", "--every", "1"), "--every must be an integer >= 2", CliError),
    # 4. several image series
    Case("mixed-series", _cmd("info", "{d}/mixed.tif"), "choose one with --series N", InvalidInputError),
    Case("series-out-of-range", _cmd("info", "{d}/mixed.tif", "--series", "5"), "there is no series 5", InvalidInputError),
    # 5. nothing larger than memory is allocated
    Case("deflate-bomb-info", _cmd("info", "{d}/bomb.tif"), "more than deflate can expand", InvalidInputError),
    Case("deflate-bomb-inpaint", _inpaint("bomb.tif", "m.tif"), "more than deflate can expand", InvalidInputError),
    Case("deflate-bomb-metrics", _cmd("metrics", "{d}/bomb.tif", "{d}/bomb.tif"), "decompression bomb", InvalidInputError),
    Case("volume-larger-than-memory", _inpaint("big.tif", "m.tif"), "needs about", NotEnoughMemoryError, setup=_little_memory),
    Case("factor-larger-than-memory", _cmd("interpolate", "{d}/v.tif", "--factor", "1000000", "-o", "{d}/out_dir/o.tif"), "choose a smaller --factor", NotEnoughMemoryError, setup=_little_memory),
    Case("engine-memory-error", _interpolate("-o", "{d}/out_dir/o.tif"), "not enough memory", MemoryError, setup=_engine_out_of_memory),
    # 6. one line instead of a traceback
    Case("unreadable-input", _interpolate("-o", "{d}/out_dir/o.tif"), "permission denied", PermissionError, setup=_unreadable),
    Case("read-only-folder", _interpolate("-o", "{d}/out_dir/o.tif"), "is not writable", CliError, setup=_read_only_folder),
    Case("read-only-mount", _interpolate("-o", "{d}/out_dir/o.tif"), "Read-only file system", CliError, setup=_read_only_mount),
    Case("disk-full", _interpolate("-o", "{d}/out_dir/o.tif"), "the disk is full", OSError, setup=_disk_full),
    Case("output-is-a-folder", _interpolate("-o", "{d}/out_dir", "--overwrite"), "is a folder", CliError),
    Case("missing-mask-file", _inpaint("v.tif", "absent.tif"), "no such file", FileNotFoundError),
    Case("not-a-tiff", _cmd("info", "{d}/image.png"), "not a TIFF file", InvalidInputError),
    Case("empty-checkpoint-folder", _cmd("export-stylegan", "{d}/empty_run", "-o", "{d}/out_dir/g.safetensors"), "holds no complete StyleGAN checkpoint", CheckpointError),
    Case("checkpoint-bad-json", _cmd("export-stylegan", "{d}/badjson_run", "-o", "{d}/out_dir/g.safetensors"), "not valid JSON", CheckpointError),
    Case("safetensors-wrong-shapes", _cmd("sample-stylegan", "--generator", "{d}/wrong.safetensors", "-n", "1", "--device", "cpu", "-o", "{d}/out_dir/s.tif"), "do not fit the architecture", CheckpointError),
    Case("pickle-renamed-safetensors", _cmd("sample-stylegan", "--generator", "{d}/pickle.safetensors", "-n", "1", "--device", "cpu", "-o", "{d}/out_dir/s.tif"), "not a valid safetensors file", CheckpointError),
    Case("malicious-train-state", _cmd("train-stylegan", "{d}/v.tif", "-o", "{d}/evil_run", "--train-steps", "2", "--device", "cpu", "-q"), "is not a safe weights file", CheckpointError),
    Case("unexpected-error", _interpolate("-o", "{d}/out_dir/o.tif"), "rerun with --debug", KeyError, code=1, setup=_engine_bug),
    # 7. outputs checked before any work
    Case("png-output", _interpolate("-o", "{d}/out_dir/x.png"), "must end in .tif or .tiff", CliError),
    Case("empty-output", _interpolate("-o", ""), "-o is empty", CliError),
    Case("non-ascii-unit", _cmd("interpolate", "{d}/unit.tif", "--missing", "3", "-o", "{d}/out_dir/o.tif"), "cannot be written", InvalidInputError),
    Case("missing-output-folder", _interpolate("-o", "{d}/nowhere/o.tif"), "does not exist", CliError),
    Case("metrics-json-suffix", _cmd("metrics", "{d}/v.tif", "{d}/v.tif", "--json", "{d}/out_dir/r.txt"), "must end in .json", CliError),
    Case("validate-empty-output", _cmd("validate", "{d}/v.tif", "-o", ""), "-o is empty", CliError),
    # 8. SIGTERM leaves no temporary file
    Case("sigterm-while-writing", _interpolate("-o", "{d}/out_dir/o.tif"), "terminated; nothing more was written", None, code=143, setup=_sigterm_while_writing),
    # 9. non-finite weights and parameters
    Case("nan-weights", _cmd("sample-stylegan", "--generator", "{d}/nan.safetensors", "-n", "1", "--device", "cpu", "-o", "{d}/out_dir/s.tif"), "NaN/infinite weights", CheckpointError),
    Case("nan-truncation", _cmd("sample-stylegan", "--truncation", "nan", "-n", "1", "-o", "{d}/out_dir/s.tif"), "--truncation must be a finite number", InvalidInputError),
    # 12. masks
    Case("float-mask-with-nan", _inpaint("v.tif", "m_nan.tif"), "mask contains 1 NaN", InvalidInputError),
    Case("nan-outside-the-mask", _inpaint("v_nan_outside.tif", "m.tif"), "outside the mask", InvalidInputError),
    # 13. messages that say what is wrong
    Case("rgb-stack", _cmd("interpolate", "{d}/rgb.tif", "--missing", "1", "-o", "{d}/out_dir/o.tif"), "has a channel axis (RGB", CliError),
    Case("one-slice-stack", _cmd("interpolate", "{d}/one.tif", "--missing", "0", "-o", "{d}/out_dir/o.tif"), "has 1 slice(s); interpolation needs at least 2", CliError),
    Case("single-2d-slice", _cmd("interpolate", "{d}/slice2d.tif", "--missing", "0", "-o", "{d}/out_dir/o.tif"), "is a single 2D slice", CliError),
    Case("empty-missing", _cmd("interpolate", "{d}/v.tif", "--missing", "", "-o", "{d}/out_dir/o.tif"), "--missing '' names no slice", CliError),
    Case("huge-missing-range", _cmd("interpolate", "{d}/v.tif", "--missing", "1-99999999999", "-o", "{d}/out_dir/o.tif"), "are outside 0..9", InvalidInputError),
    Case("cross-field-rule-names-flags", _inpaint("v.tif", "m.tif", "--context", "200"), "--tile-size (256) must be at least", InvalidInputError),
    Case("api-argument-named-as-flag", _interpolate("-o", "{d}/out_dir/o.tif"), "another volume; or --no-resume", InvalidInputError, setup=_engine_names_an_api_argument),
    Case("factor-1", _cmd("interpolate", "{d}/v.tif", "--factor", "1", "-o", "{d}/out_dir/o.tif"), "--factor must be an integer >= 2", CliError),
    Case("offline-sd-model", _cmd("diffedit", "{d}/v.tif", "--mask", "{d}/m.tif", "--prompt", "x", "--model", "nobody/absent", "--device", "cpu", "-o", "{d}/out_dir/o.tif", "-q"), "is not available offline", ModelNotAvailableError),
    Case("sd-without-tokenizer", _cmd("diffedit", "{d}/v.tif", "--mask", "{d}/m.tif", "--prompt", "x", "--model", "{d}/sd_no_tokenizer", "--device", "cpu", "-o", "{d}/out_dir/o.tif", "-q"), "'tokenizer' component is missing", ModelNotAvailableError),
    Case("sd-without-unet-weights", _cmd("diffedit", "{d}/v.tif", "--mask", "{d}/m.tif", "--prompt", "x", "--model", "{d}/sd_no_unet_weights", "--device", "cpu", "-o", "{d}/out_dir/o.tif", "-q"), "no weights file (diffusion_pytorch_model.safetensors)", ModelNotAvailableError),
    Case("unclip-without-feature-extractor", _cmd("unclip", "{d}/v.tif", "--model", "{d}/unclip_no_feature_extractor", "--device", "cpu", "-o", "{d}/out_dir/o.tif", "-q"), "'feature_extractor' component is missing (feature_extractor/: the folder does not exist)", ModelNotAvailableError),
    Case("unclip-without-image-encoder-weights", _cmd("unclip", "{d}/v.tif", "--model", "{d}/unclip_no_image_encoder_weights", "--device", "cpu", "-o", "{d}/out_dir/o.tif", "-q"), "'image_encoder' component is missing (image_encoder/: no weights file (model.safetensors))", ModelNotAvailableError),
    Case("validate-two-slices", _cmd("validate", "{d}/two.tif", "-o", "{d}/out_dir/val", "--methods", "linear"), "validation needs at least 3", CliError),
    Case("validate-drop-every-1", _cmd("validate", "{d}/v.tif", "-o", "{d}/out_dir/val", "--drop-every", "1"), "--drop-every must be an integer >= 2", CliError),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_input_gets_one_clear_line_and_changes_nothing(case, inputs, monkeypatch, capsys):
    if case.setup is not None:
        case.setup(monkeypatch, inputs)
    argv = case.argv(inputs)
    before = tree_state(inputs)
    assert main(argv) == case.code
    err = capsys.readouterr().err
    assert case.fragment in err, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("napari-scigen ")]
    assert len(lines) == 1 and err.strip().endswith(lines[0]), err  # one line, and last
    if case.error is not None:
        with pytest.raises(case.error):
            main(["--debug", *argv])
    assert tree_state(inputs) == before  # inputs unchanged, nothing left behind
    assert not (inputs.parent / "PWNED").exists()  # no pickle was ever run
    assert "weights_only=False" not in err


def _api_interpolate(**kwargs):
    from napari_scigen import api

    volume = np.zeros((6, 8, 8), np.uint16)
    return lambda d: api.interpolate(volume, **kwargs)


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _evaluate_slices(d):
    from napari_scigen import api

    volume = np.zeros((4, 16, 16), np.uint16)
    return api.evaluate(volume, volume, slices=[9])


def _inpaint_nan_mask(d):
    from napari_scigen import api

    mask = np.zeros((8, 8), np.float32)
    mask[2, 2], mask[0, 0] = 1, np.nan
    return api.inpaint(np.zeros((8, 8), np.uint16), mask)


def _load(path: str):
    from napari_scigen.engines.stylegan.checkpoint import load_generator

    return lambda d: load_generator(d / path)


#: The same faults through the API: (id, call, error class, message fragment).
API_CASES = [
    ("missing-float", _api_interpolate(missing=[2.7]), InvalidInputError, "whole-number"),
    ("missing-text", _api_interpolate(missing="12"), InvalidInputError, "got the text"),
    ("missing-bool", _api_interpolate(missing=[True]), InvalidInputError, "whole-number"),
    ("missing-scalar", _api_interpolate(missing=5), InvalidInputError, "use [5]"),
    ("factor-larger-than-memory", _api_interpolate(factor=10**9), NotEnoughMemoryError, "choose a smaller upsampling factor"),
    ("read-bomb", lambda d: read_volume(d / "bomb.tif"), InvalidInputError, "deflate"),
    ("read-mixed", lambda d: read_volume(d / "mixed.tif"), InvalidInputError, "series=N"),
    ("read-series-bool", lambda d: read_volume(d / "v.tif", series=True), InvalidInputError, "whole number"),
    ("write-to-folder", lambda d: write_volume(_folder(d / "out_dir" / "x.tif"), np.zeros((4, 4), np.uint8)), InvalidInputError, "is a folder"),
    ("write-non-ascii-unit", lambda d: write_volume(d / "out_dir" / "o.tif", np.zeros((4, 4), np.uint8), voxel_size=(1, 1), unit="\u5fae\u7c73"), InvalidInputError, "ASCII"),
    ("inpaint-nan-mask", _inpaint_nan_mask, InvalidInputError, "mask contains 1 NaN"),
    ("evaluate-slices", _evaluate_slices, InvalidInputError, "outside 0..3"),
    ("load-pickle-generator", _load("pickle.safetensors"), CheckpointError, "not a valid safetensors"),
    ("load-nan-generator", _load("nan.safetensors"), CheckpointError, "NaN/infinite weights"),
    ("load-wrong-generator", _load("wrong.safetensors"), CheckpointError, "size mismatch"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "fragment"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])  # fmt: skip
def test_a_bad_input_through_the_api_raises_a_clear_error(inputs, call, error, fragment):
    before = tree_state(inputs)
    with pytest.raises(error, match=re.escape(fragment)) as raised:
        call(inputs)
    assert "\n" not in str(raised.value)
    assert tree_state(inputs) == before


def test_local_model_checks_know_which_components_each_pipeline_loads(tmp_path):
    from napari_scigen.engines.sd.hub import check_local_model

    def check(folder):
        check_local_model(folder, what="Stable unCLIP", index_file="model_index.json")

    check(_unclip_folder(tmp_path / "unclip"))  # complete: accepted
    with pytest.raises(ModelNotAvailableError, match="'tokenizer' component is missing"):
        check(_unclip_folder(tmp_path / "slow_tokenizer", leave_out=("tokenizer/merges.txt",)))
    with pytest.raises(ModelNotAvailableError, match="no preprocessor_config.json"):
        check(_unclip_folder(tmp_path / "no_processor", leave_out=("feature_extractor/preprocessor_config.json",)))  # fmt: skip
    # plain Stable Diffusion: the loader drops the feature extractor, so it may be absent
    sd = _unclip_folder(tmp_path / "sd", leave_out=("feature_extractor",))
    index = json.loads((sd / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    (sd / "model_index.json").write_text(json.dumps(index))
    check(sd)


def test_the_output_checks_come_before_any_work(inputs, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("the input was read before the output was checked")

    monkeypatch.setattr("napari_scigen._cli.engines.read_input", never)
    for output in ("{d}/out_dir/x.png", "{d}/nowhere/o.tif", "{d}/v.tif", ""):
        assert main(_interpolate("-o", output)(inputs)) == 2


def test_a_closed_output_pipe_ends_info_quietly(inputs):
    command = [sys.executable, "-m", "napari_scigen.cli", "info", str(inputs / "v.tif")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # what `| head -1` does once it has its line
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err and "ignored" not in err


def test_demo_replaces_its_files_only_with_overwrite(inputs, capsys):
    argv = ["demo", "-o", str(inputs / "demo"), "--shape", "16,64,64", "--methods", "linear"]
    argv += ["--inpaint-methods", "biharmonic"]
    assert main([*argv, "-q"]) == 2
    assert (inputs / "demo" / "rock.tif").read_bytes() == b"the user's own rock"
    assert main([*argv, "-q", "--overwrite"]) == 0
    assert read_volume(inputs / "demo" / "rock.tif").shape == (16, 64, 64)


@pytest.mark.parametrize("dtype", ["bool", "int8", "int32", "uint32", "int64", "uint64"])
def test_masks_of_any_integer_or_bool_dtype_are_accepted(inputs, dtype, capsys):
    mask = read_volume(inputs / "m.tif").data
    tifffile.imwrite(inputs / "mask_any.tif", mask.astype(dtype))
    out = inputs / "out_dir" / "o.tif"
    assert main(["inpaint", str(inputs / "v.tif"), "--mask", str(inputs / "mask_any.tif"), "-o", str(out), "-q"]) == 0  # fmt: skip
    source = read_volume(inputs / "v.tif").data
    assert np.array_equal(read_volume(out).data[mask == 0], source[mask == 0])


def test_nan_pixels_inside_the_inpainting_mask_are_filled(inputs, capsys):
    source = read_volume(inputs / "v.tif").data.astype(np.float32)
    mask = read_volume(inputs / "m.tif").data
    source[:, 12:14, 12:14] = np.nan  # inside the mask: masking them is the fix
    tifffile.imwrite(inputs / "nan_inside.tif", source)
    out = inputs / "out_dir" / "o.tif"
    assert main(["inpaint", str(inputs / "nan_inside.tif"), "--mask", str(inputs / "m.tif"), "-o", str(out), "-q"]) == 0  # fmt: skip
    filled = read_volume(out)
    assert np.isfinite(filled.data).all()
    assert np.array_equal(filled.data[mask == 0], source[mask == 0])
    json.dumps(filled.provenance, allow_nan=False)  # strict JSON


def test_several_matching_series_are_read_as_one_stack(inputs, capsys):
    volume = read_volume(inputs / "v.tif").data
    path = inputs / "appended.tif"
    tifffile.imwrite(path, volume[:5])
    tifffile.imwrite(path, volume[5:], append=True)
    read = read_volume(path)
    assert np.array_equal(read.data, volume)
    assert any("2 image series" in note for note in read.metadata["notes"])
    assert np.array_equal(read_volume(path, series=1).data, volume[5:])
    assert np.array_equal(np.asarray(read_volume(path, lazy=True).data[7]), volume[7])
    out = inputs / "out_dir" / "o.tif"
    assert main(["interpolate", str(path), "--series", "1", "--missing", "2", "-o", str(out), "-q"]) == 0  # fmt: skip
    assert read_volume(out).shape == (5, 32, 40)


def test_a_failing_metric_gives_its_own_row_and_the_others_still_run(inputs, capsys):
    tifffile.imwrite(inputs / "flat.tif", np.full((6, 32, 32), 7, np.uint16), photometric="minisblack")  # fmt: skip
    flat = str(inputs / "flat.tif")
    assert main(["metrics", flat, flat, "--metrics", "ssim,morphology", "-q"]) == 0
    captured = capsys.readouterr()
    assert "ssim" in captured.out and "morphology failed: the image is constant" in captured.err
    assert main(["metrics", flat, flat, "--metrics", "morphology", "-q"]) == 2  # only one: error


# ---------------------------------------------------------------------------------------
# property-based fuzzing: never a traceback
# ---------------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@FUZZ
@given(text=st.text(alphabet="0123456789-,:; aAlc\t", max_size=14), n=st.integers(1, 40))
def test_fuzzed_slice_selections_parse_or_fail_cleanly(text, n):
    from napari_scigen.core.indices import parse_indices, parse_slice_selection

    for parse in (lambda: parse_slice_selection(text, n), lambda: parse_indices(text, n)):
        try:
            result = parse()
        except InvalidInputError:
            continue
        assert result is None or all(isinstance(i, int) and 0 <= i < n for i in result)


@FUZZ
@given(
    values=st.lists(
        st.one_of(
            st.integers(-3, 50), st.floats(allow_nan=True), st.booleans(), st.text(max_size=2)
        ),
        max_size=5,
    )
)
def test_fuzzed_index_lists_from_code_are_checked_not_coerced(values):
    from napari_scigen.core.indices import check_indices

    try:
        result = check_indices(values, n=20)
    except InvalidInputError:
        return
    assert list(result) == values and all(type(v) is int for v in values)


_DTYPES = ["uint8", "uint16", "int16", "float32", "int8", "uint32", "float64", "bool"]


@FUZZ
@given(
    shape=st.lists(st.integers(1, 9), min_size=2, max_size=4),
    dtype=st.sampled_from(_DTYPES),
    compression=st.sampled_from([None, "zlib", "lzw", "packbits"]),
    pages=st.integers(1, 3),
    damage=st.one_of(st.none(), st.tuples(st.integers(0, 400), st.integers(0, 255))),
    truncate=st.one_of(st.none(), st.integers(8, 400)),
)
def test_fuzzed_tiff_headers_read_or_fail_cleanly(shape, dtype, compression, pages, damage, truncate):  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.tif"
        data = np.ones(shape, dtype=dtype)
        for _ in range(pages):
            tifffile.imwrite(path, data, compression=compression, append=True, photometric="minisblack")  # fmt: skip
        raw = bytearray(path.read_bytes())
        if damage is not None and damage[0] < len(raw):
            raw[damage[0]] = damage[1]
        if truncate is not None:
            raw = raw[:truncate]
        path.write_bytes(bytes(raw))
        for lazy in (False, True):
            try:
                volume = read_volume(path, lazy=lazy)
                np.asarray(volume.data[0]), np.asarray(volume.data[-1])
            except InvalidInputError:
                pass
        for series in (None, 0):
            args = ["info", str(path)] + ([] if series is None else ["--series", "0"])
            assert main(args) in (0, 2)
