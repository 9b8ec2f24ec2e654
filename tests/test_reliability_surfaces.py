"""Bad inputs on the newer surfaces: batch, convert, OME-Zarr, learned weights (issue 20).

Every row of :data:`CASES` runs one command on a folder of inputs (TIFF volumes, OME-Zarr
stores, crafted stores made by :func:`crafted_zarr`) and asserts the exit status, one
clear line on stderr with no traceback, and that every file under the folder is
unchanged afterwards (sha256) with nothing left behind. Refusals happen before a Dask
cluster starts, so the rows are fast. A small hypothesis test at the end fuzzes zarr
metadata: whatever it declares, reading gives a volume or an ``InvalidInputError``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("zarr", minversion="3")
pytest.importorskip("distributed")

from _reliability import Case, crafted_tiff, run_case  # noqa: E402 - the folder: conftest's ``inputs``
from napari_scigen.cli import main  # noqa: E402
from napari_scigen.core.io import read_volume, write_volume, write_zarr  # noqa: E402

# ---------------------------------------------------------------------------------------
# the inputs
# ---------------------------------------------------------------------------------------


def crafted_zarr(
    path: Path,
    shape=(4, 8, 8),
    chunks=None,
    dtype="uint16",
    *,
    data: np.ndarray | None = None,
    scale=None,
    ngff: bool = True,
    zarr_format: int = 3,
    drop_chunks: tuple = (),
    raw_edits: Callable[[Path], None] | None = None,
) -> Path:
    """A zarr store that declares whatever a test wants (shape, chunks, dtype, scale).

    Chunks are written only when ``data`` is given (a declared size needs no data on
    disk); ``drop_chunks`` deletes chunk files afterwards (by zarr key, e.g. ``"c/0/0/0"``)
    and ``raw_edits`` may then change the metadata files by hand.
    """
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    array = group.create_array(
        "0", shape=tuple(shape), chunks=tuple(chunks or shape), dtype=dtype, fill_value=0
    )
    if data is not None:
        array[...] = data
    if ngff:
        axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"[-len(shape) :]]
        scale = list(scale) if scale is not None else [1.0] * len(shape)
        multiscales = [
            {
                "axes": axes,
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                ],
                "name": path.name,
            }
        ]
        if zarr_format == 3:
            group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
        else:
            group.attrs["multiscales"] = [{**multiscales[0], "version": "0.4"}]
    for key in drop_chunks:
        (path / "0" / key).unlink()
    if raw_edits is not None:
        raw_edits(path)
    return path


def _edit_json(relative: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        target = path / relative
        record = json.loads(target.read_text())
        change(record)
        target.write_text(json.dumps(record))

    return edit


# ---------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------


_BATCH = ("batch", "--workers", "1", "--dashboard", "off", "-q")


def _batch(task: str, method: str, source: str, *args: str) -> tuple[str, ...]:
    return ("batch", task, method, f"{{d}}/{source}", *args, *_BATCH[1:])


def _interrupted_job_then_changed_input(d: Path) -> None:
    """A batch store of ``v.tif`` whose job never ran, then ``v.tif`` rewritten (same shape)."""
    from napari_scigen.workflows.batch import BatchRequest, plan_batch, prepare_store

    request = BatchRequest("interpolate", "linear", str(d / "v.tif"), str(d / "out" / "r.ome.zarr"), missing=(3,))  # fmt: skip
    prepare_store(plan_batch(request))
    changed = read_volume(d / "v.tif").data[::-1].copy()
    write_volume(d / "v.tif", changed)


def _store(name: str, **kwargs) -> Callable[[Path], None]:
    """Setup: the crafted store ``name`` under the inputs folder (see :func:`crafted_zarr`)."""

    def make(d: Path) -> None:
        crafted_zarr(d / name, **kwargs)

    return make


_DATA = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)


def _corrupt_chunk(path: Path) -> None:
    (path / "0" / "c" / "0" / "0" / "0").write_bytes(b"not zstd data" * 4)


def _link_loop(path: Path) -> None:
    os.rename(path / "0" / "c", path / "0" / "c_old")
    os.symlink("c", path / "0" / "c")


def _lose_a_chunk(d: Path) -> None:
    write_zarr(d / "lost.ome.zarr", _DATA, chunk_slices=1, levels=1)
    (d / "lost.ome.zarr" / "0" / "c" / "2" / "0" / "0").unlink()


def _nan_learned_weights(d: Path) -> None:
    """``nan.safetensors`` (+ ``nan.json``): learned-engine weights with one NaN tensor."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    from napari_scigen.engines.learned.networks import UNetConfig, build_network
    from napari_scigen.engines.learned.store import FORMAT, save_weights

    path = save_weights(build_network(UNetConfig(in_channels=2, base_channels=8)), d / "nan", {})
    tensors = load_file(str(path))
    first = next(iter(tensors))
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, str(path), metadata={"format": FORMAT})


def _full_disk(*args, **kwargs):
    """What a write to a full disk does: part of the file, then ENOSPC."""
    target = Path(args[1] if len(args) > 1 else args[0])
    target.write_bytes(b"")
    raise OSError(errno.ENOSPC, "No space left on device", str(target))


def _disk_full_in_metrics_json(monkeypatch, d) -> None:
    monkeypatch.setattr("napari_scigen.metrics.report.write_rows_json", lambda rows, path, **k: _full_disk(path))  # fmt: skip


def _disk_full_in_batch_bookkeeping(monkeypatch, d) -> None:
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if ".napari_scigen_batch" in str(self):
            _full_disk(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


def _tiff_write_stops_short(monkeypatch, d) -> None:
    def write(file, *args, **kwargs):
        Path(file).write_bytes(b"half a file")
        raise OSError("655360 requested and 522960 written")  # numpy's words, no errno

    monkeypatch.setattr("napari_scigen.core.io.write._write_tiff", write)
    usage = shutil.disk_usage(d)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=4096))


def _info(store: str) -> tuple[str, ...]:
    return ("info", f"{{d}}/{store}")


def _interpolate_store(store: str) -> tuple[str, ...]:
    return ("interpolate", f"{{d}}/{store}", "--missing", "1", "-o", "{d}/out/o.tif", "-q")


CASES = [
    # 1. batch and convert never write over an input
    Case("batch-output-is-the-input-store", _batch("interpolate", "linear", "s.ome.zarr", "--missing", "3", "-o", "{d}/s.ome.zarr", "--overwrite"), "is the input"),
    Case("batch-output-is-the-mask-store", _batch("inpaint", "biharmonic", "v.tif", "--mask", "{d}/ms.ome.zarr", "-o", "{d}/ms.ome.zarr", "--overwrite"), "is the input"),
    Case("batch-output-is-a-symlink", _batch("interpolate", "linear", "v.tif", "--missing", "3", "-o", "{d}/out/link.ome.zarr", "--overwrite"), "is a symbolic link"),
    Case("convert-output-is-a-symlink", ("convert", "{d}/v.tif", "{d}/out/link.ome.zarr", "--overwrite"), "is a symbolic link"),
    Case("convert-over-a-foreign-folder", ("convert", "{d}/v.tif", "{d}/out/notes.ome.zarr", "--overwrite"), "is not a zarr store"),
    Case("convert-into-the-input-store", ("convert", "{d}/s.ome.zarr", "{d}/s.ome.zarr/x.tif"), "inside the input store"),
    # 2. --overwrite never deletes an input inside the output store
    Case("batch-input-inside-the-output", _batch("interpolate", "linear", "p.zarr/scan.tif", "--missing", "3", "-o", "{d}/p.zarr", "--overwrite"), "contains the input"),
    # 3. a resumed job notices a changed input
    Case("batch-resume-after-the-input-changed", _batch("interpolate", "linear", "v.tif", "--missing", "3", "-o", "{d}/out/r.ome.zarr"), "was started from other content of", setup=_interrupted_job_then_changed_input),
    Case("convert-input-inside-the-output", ("convert", "{d}/p.zarr/scan.tif", "{d}/p.zarr", "--overwrite"), "contains the input"),
    # 4. declared sizes are checked before anything is read or allocated
    Case("zarr-huge-slice-info", _info("huge.zarr"), "one slice of huge.zarr", setup=_store("huge.zarr", shape=(16, 10**6, 10**6), chunks=(1, 1024, 1024))),
    Case("zarr-huge-slice-interpolate", _interpolate_store("huge.zarr"), "needs about", setup=_store("huge.zarr", shape=(16, 10**6, 10**6), chunks=(1, 1024, 1024))),
    Case("zarr-huge-slice-batch", _batch("interpolate", "linear", "huge.zarr", "--missing", "1", "-o", "{d}/out/b.ome.zarr"), "needs about", setup=_store("huge.zarr", shape=(16, 10**6, 10**6), chunks=(1, 1024, 1024))),
    Case("zarr-tiny-chunks-info", _info("tiny.zarr"), "chunks of only 2 B each", setup=_store("tiny.zarr", shape=(100_000, 64, 64), chunks=(1, 1, 1))),
    Case("zarr-tiny-chunks-convert", ("convert", "{d}/tiny.zarr", "{d}/out/t.ome.zarr"), "chunks of only 2 B each", setup=_store("tiny.zarr", shape=(100_000, 64, 64), chunks=(1, 1, 1))),
    Case("zarr-tiny-chunks-interpolate", _interpolate_store("tiny.zarr"), "chunks of only 2 B each", setup=_store("tiny.zarr", shape=(100_000, 64, 64), chunks=(1, 1, 1))),
    Case("zarr-huge-chunk", _info("bigchunk.zarr"), "one stored chunk of bigchunk.zarr", setup=_store("bigchunk.zarr", shape=(4, 8, 8), chunks=(1, 10**6, 10**6))),
    # 5. batch shares the single-process checks, and its own counts are checked
    Case("batch-huge-factor", _batch("interpolate", "linear", "v.tif", "--factor", "1000000", "-o", "{d}/out/f.ome.zarr"), "--factor 1000000 makes 15,000,001 output slices"),
    Case("batch-factor-1", _batch("interpolate", "linear", "v.tif", "--factor", "1", "-o", "{d}/out/f.ome.zarr"), "--factor must be an integer >= 2"),
    Case("batch-chunk-slices-0", _batch("interpolate", "linear", "v.tif", "--missing", "3", "--chunk-slices", "0", "-o", "{d}/out/f.ome.zarr"), "--chunk-slices must be >= 1, got 0"),
    Case("batch-negative-retries", _batch("interpolate", "linear", "v.tif", "--missing", "3", "--retries", "-1", "-o", "{d}/out/f.ome.zarr"), "--retries must be >= 0, got -1"),
    # 6. weights a user passes are checked for NaN/infinite values before use
    Case("learned-nan-init-weights", ("interpolate", "{d}/v.tif", "--missing", "3", "--method", "learned", "--init-weights", "{d}/nan.safetensors", "-o", "{d}/out/l.tif", "-q"), "holds NaN/infinite weights", setup=_nan_learned_weights),
    Case("learned-nan-init-weights-batch", _batch("interpolate", "learned", "v.tif", "--missing", "3", "--init-weights", "{d}/nan.safetensors", "-o", "{d}/out/l.ome.zarr"), "holds NaN/infinite weights", setup=_nan_learned_weights),
    # 7. a chunk failing on the user's input: one line, no worker traceback, no empty store
    Case("batch-mask-covers-everything", _batch("inpaint", "biharmonic", "v.tif", "--mask", "{d}/full.tif", "-o", "{d}/out/b.ome.zarr"), "are masked entirely", setup=lambda d: tifffile.imwrite(d / "full.tif", np.ones((16, 32, 32), np.uint8))),
    Case("batch-corrupt-input-chunk", _batch("interpolate", "linear", "bad.zarr", "--missing", "1", "-o", "{d}/out/b.ome.zarr"), "a stored chunk cannot be decoded", setup=_store("bad.zarr", data=_DATA, raw_edits=_corrupt_chunk)),
    # 8. a full disk leaves nothing behind, and says so with the file's name
    Case("metrics-json-on-a-full-disk", ("metrics", "{d}/v.tif", "{d}/v.tif", "--metrics", "psnr", "--json", "{d}/out/r.json", "-q"), "the disk is full", patch=_disk_full_in_metrics_json),
    Case("batch-bookkeeping-on-a-full-disk", _batch("interpolate", "linear", "v.tif", "--missing", "3", "-o", "{d}/out/b.ome.zarr"), "the disk is full", patch=_disk_full_in_batch_bookkeeping),
    Case("tiff-write-stops-short", ("interpolate", "{d}/v.tif", "--missing", "3", "-o", "{d}/out/o.tif", "-q"), "o.tif: the disk is full", patch=_tiff_write_stops_short),
    # 9. damaged or crafted stores: a user error that names the store
    Case("zarr-corrupt-chunk", _interpolate_store("bad.zarr"), "a stored chunk cannot be decoded", setup=_store("bad.zarr", data=_DATA, raw_edits=_corrupt_chunk)),
    Case("zarr-lying-dtype", _interpolate_store("bad.zarr"), "a stored chunk cannot be decoded", setup=_store("bad.zarr", data=_DATA, raw_edits=_edit_json("0/zarr.json", lambda r: r.update(data_type="float32")))),
    Case("zarr-text-scale", _info("bad.zarr"), "is not a list of numbers", setup=_store("bad.zarr", data=_DATA, scale=["a", "b", "c"])),
    Case("zarr-huge-scale", _info("bad.zarr"), "is not plausible", setup=_store("bad.zarr", data=_DATA, scale=[1e308] * 3)),
    Case("zarr-complex-dtype", _info("bad.zarr"), "unsupported dtype complex64", setup=_store("bad.zarr", dtype="complex64")),
    Case("zarr-text-dtype", _info("bad.zarr"), "unsupported dtype", setup=_store("bad.zarr", dtype="str")),
    Case("zarr-negative-shape", _info("bad.zarr"), "has broken metadata", setup=_store("bad.zarr", data=_DATA, raw_edits=_edit_json("0/zarr.json", lambda r: r.update(shape=[-4, 8, 8])))),
    Case("zarr-symlink-loop", _interpolate_store("bad.zarr"), "symbolic link loop", setup=_store("bad.zarr", data=_DATA, raw_edits=_link_loop)),
    # a store written here that lost a chunk is not read as zeros by convert or batch
    Case("zarr-missing-chunk-convert", ("convert", "{d}/lost.ome.zarr", "{d}/out/x.tif"), "1 of its stored chunks are missing", setup=_lose_a_chunk),
    Case("zarr-missing-chunk-batch", _batch("interpolate", "linear", "lost.ome.zarr", "--missing", "1", "-o", "{d}/out/b.ome.zarr"), "1 of its stored chunks are missing", setup=_lose_a_chunk),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_input_on_a_new_surface_gets_one_line_and_changes_nothing(
    case, inputs, capfd, monkeypatch
):
    run_case(case, inputs, capfd, monkeypatch)


def test_convert_replaces_its_own_earlier_store_with_overwrite(inputs, capsys):
    out = inputs / "out" / "copy.ome.zarr"
    assert main(["convert", str(inputs / "v.tif"), str(out)]) == 0
    assert main(["convert", str(inputs / "v.tif"), str(out)]) == 2  # exists: not replaced
    assert main(["convert", str(inputs / "v.tif"), str(out), "--overwrite"]) == 0
    np.testing.assert_array_equal(read_volume(out).data, read_volume(inputs / "v.tif").data)


class _FakePipeline:
    """Stands in for a diffusers pipeline: :func:`_load_into` reads adapters through it."""

    state: dict = {}

    @classmethod
    def lora_state_dict(cls, folder, **kwargs):
        return cls.state, None, None


@pytest.mark.parametrize("file", ["pytorch_lora_weights.safetensors", "learned_embeds.safetensors"])
def test_an_adapter_with_nan_weights_is_refused_before_it_is_applied(tmp_path, file):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from napari_scigen.core.validation import InvalidInputError
    from napari_scigen.engines.sd.adapters import _load_into

    tensors = {"unet.down.lora_A.weight": torch.tensor([[1.0, float("nan")]])}
    save_file(tensors, str(tmp_path / file))
    _FakePipeline.state = tensors
    with pytest.raises(InvalidInputError, match="holds NaN/infinite weights"):
        _load_into(_FakePipeline(), tmp_path, 1.0, {"token": "<t>"})


def test_the_napari_reader_refuses_a_store_of_millions_of_tiny_chunks_at_once(tmp_path):
    from napari_scigen._napari._reader import get_reader
    from napari_scigen.core.validation import InvalidInputError

    store = crafted_zarr(tmp_path / "tiny.zarr", shape=(100_000, 64, 64), chunks=(1, 1, 1))
    with pytest.raises(InvalidInputError, match="chunks of only 2 B each"):
        get_reader(str(store))(str(store))


def test_a_store_written_here_that_lost_a_chunk_is_noted_and_warned_about(inputs, capsys):
    _lose_a_chunk(inputs)
    volume = read_volume(inputs / "lost.ome.zarr")
    assert volume.metadata["missing_chunks"] == 1
    assert main(["info", str(inputs / "lost.ome.zarr")]) == 0
    assert "1 stored chunk(s) are missing" in capsys.readouterr().out
    out = str(inputs / "out" / "o.tif")
    assert main(["interpolate", str(inputs / "lost.ome.zarr"), "--missing", "1", "-o", out, "-q"]) == 0  # fmt: skip
    assert "warning: input" in capsys.readouterr().err
    complete = inputs / "out" / "zeros.ome.zarr"  # chunks of zeros are stored too: none missing
    write_zarr(complete, np.zeros((4, 8, 8), np.uint8), chunk_slices=1, levels=1)
    assert "missing_chunks" not in read_volume(complete).metadata


def _valid_deflate_tiff(path: Path, side: int) -> None:
    """A one-page uint8 TIFF of ``side`` x ``side`` zeros in one deflate strip (valid data)."""
    import zlib

    packer, parts = zlib.compressobj(9), []
    row_block = b"\0" * side * 64
    for _ in range(side // 64):
        parts.append(packer.compress(row_block))
    parts.append(packer.compress(b"\0" * side * (side % 64)) + packer.flush())
    crafted_tiff(path, side, 8, b"".join(parts))


_LIMITED_INFO = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, 3 * 1024**3))
from napari_scigen.cli import main
code = main(["info", sys.argv[1]])
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("peak_kib", peak[0].split()[1] if peak else 0, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("name", ["huge.zarr", "tiny.zarr", "deflate.tif"])
def test_info_on_files_that_declare_too_much_stays_small_and_quick(tmp_path, name):
    import subprocess
    import sys

    path = tmp_path / name
    if name == "huge.zarr":  # 18.6 GiB per slice: more than the 3 GiB the process may map
        crafted_zarr(path, shape=(16, 100_000, 100_000), chunks=(1, 1024, 1024))
    elif name == "tiny.zarr":  # 409,600,000 chunks of 2 bytes
        crafted_zarr(path, shape=(100_000, 64, 64), chunks=(1, 1, 1))
    else:  # 400 MB of zeros from a 0.4 MB valid deflate strip
        _valid_deflate_tiff(path, 20_000)
    done = subprocess.run(
        [sys.executable, "-c", _LIMITED_INFO, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == (0 if name == "deflate.tif" else 2), done.stderr
    assert "Traceback" not in done.stderr
    peak_mib = int(done.stderr.split("peak_kib")[1]) / 1024  # 0 where /proc is missing
    assert peak_mib < 300, peak_mib  # the interpreter and its libraries, no pixel data


# ---------------------------------------------------------------------------------------
# property-based fuzzing of zarr metadata: a volume or one clear error, never a bomb
# ---------------------------------------------------------------------------------------

_ZARR_DTYPES = ["uint8", "uint16", "int16", "float32", "float64", "int64", "bool", "complex64"]
_DECLARED = st.one_of(
    st.integers(-3, 40),
    st.integers(10**6, 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.none(),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)  # fmt: skip
@given(
    shape=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    dtype=st.sampled_from(_ZARR_DTYPES),
    scale=st.lists(_DECLARED, min_size=0, max_size=4),
    field=st.sampled_from(["shape", "chunks", "data_type", "fill_value", "scale", None]),
    declared=st.one_of(_DECLARED, st.lists(_DECLARED, max_size=4)),
    lose_chunk=st.booleans(),
)
def test_fuzzed_zarr_metadata_reads_or_fails_cleanly(
    shape, dtype, scale, field, declared, lose_chunk
):
    from napari_scigen.core.validation import InvalidInputError

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.zarr"
        data = np.ones(shape, dtype=dtype)
        crafted_zarr(path, shape=shape, dtype=dtype, data=data, scale=[1.0] * len(shape))
        meta = json.loads((path / "0" / "zarr.json").read_text())
        group = json.loads((path / "zarr.json").read_text())
        if field == "scale":
            transform = group["attributes"]["ome"]["multiscales"][0]["datasets"][0]
            transform["coordinateTransformations"][0]["scale"] = scale
        elif field == "chunks":
            meta["chunk_grid"]["configuration"]["chunk_shape"] = declared
        elif field is not None:
            meta[field] = declared
        (path / "0" / "zarr.json").write_text(json.dumps(meta))
        (path / "zarr.json").write_text(json.dumps(group))
        if lose_chunk:
            for chunk in (path / "0" / "c").rglob("*"):
                if chunk.is_file():
                    chunk.unlink()
                    break
        for lazy in (False, True):
            try:
                volume = read_volume(path, lazy=lazy)
                np.asarray(volume.data[0]), np.asarray(volume.data[-1])
            except InvalidInputError:
                pass
        assert main(["info", str(path)]) in (0, 2)


@pytest.mark.parametrize("max_files", [200_000, 2])  # every file; folders and metadata only
def test_content_identity_sees_a_rewritten_input_and_nothing_else(tmp_path, monkeypatch, max_files):
    from napari_scigen.core.io import identity

    monkeypatch.setattr(identity, "MAX_FILES", max_files)
    store = tmp_path / "s.ome.zarr"
    write_zarr(store, _DATA, chunk_slices=1, levels=1)
    first = identity.content_identity(store)
    assert identity.content_identity(store) == first  # unchanged: the same identity
    chunk = store / "0" / "c" / "1" / "0" / "0"
    replacement = chunk.with_name("new")
    replacement.write_bytes(chunk.read_bytes())
    os.replace(replacement, chunk)  # rewritten by a rename, as zarr and copy tools do
    assert identity.content_identity(store) != first
