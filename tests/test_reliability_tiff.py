"""TIFF pages that declare more pixels than their codec can expand to (issue 20, class 4).

A crafted TIFF holds one valid compressed strip (4 KiB of zeros) under a header that
declares a 20000 x 20000 page (381 MiB): refused from the header, before anything is
allocated, for every codec with a bounded expansion (deflate, PNG, LZW, PackBits, zstd,
LZMA), in a file and in a folder of slices. The same files in a subprocess whose address
space is capped at 3 GiB stay under 300 MiB. Real files of zeros, which compress as well
as anything can, are still read.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

imagecodecs = pytest.importorskip("imagecodecs")
pytest.importorskip("zarr", minversion="3")

from _reliability import Case, crafted_tiff, run_case  # noqa: E402

#: codec -> (TIFF compression code, name in the message, encoder)
CODECS = {
    "deflate": (8, "deflate", imagecodecs.zlib_encode),
    "lzw": (5, "LZW", imagecodecs.lzw_encode),
    "packbits": (32773, "PackBits", imagecodecs.packbits_encode),
    "zstd": (50000, "zstd", imagecodecs.zstd_encode),
    "lzma": (34925, "LZMA", imagecodecs.lzma_encode),
}


def _bomb(codec: str, side: int = 20_000):
    code, _, encode = CODECS[codec]

    def make(d: Path) -> None:
        crafted_tiff(d / f"{codec}.tif", side, code, encode(bytes(4096)))

    return make


def _bomb_in_a_folder(codec: str):
    """Setup: ``slices/`` of three valid 20000 x 20000 slice headers (the first is real)."""

    def make(d: Path) -> None:
        folder = d / "slices"
        folder.mkdir()
        code, _, encode = CODECS[codec]
        for index in range(3):
            crafted_tiff(folder / f"s{index:03d}.tif", 20_000, code, encode(bytes(4096)))

    return make


def _interpolate(source: str) -> tuple[str, ...]:
    return ("interpolate", f"{{d}}/{source}", "--missing", "1", "-o", "{d}/out/o.tif", "-q")


CASES = [
    Case(f"{codec}-page-declares-more-than-it-can-hold", _interpolate(f"{codec}.tif"), f"bytes of {name} data, more than {name} can expand to", setup=_bomb(codec))
    for codec, (_, name, _) in CODECS.items()
] + [
    Case("info-on-an-lzw-bomb", ("info", "{d}/lzw.tif"), "more than LZW can expand to", setup=_bomb("lzw")),
    Case("zstd-bomb-in-a-folder-of-slices", _interpolate("slices"), "more than zstd can expand to", setup=_bomb_in_a_folder("zstd")),
    Case("packbits-bomb-in-a-folder-of-slices", ("convert", "{d}/slices", "{d}/out/s.ome.zarr"), "more than PackBits can expand to", setup=_bomb_in_a_folder("packbits")),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_tiff_page_declaring_more_than_its_codec_allows_is_refused(
    case,
    inputs,
    capfd,
    monkeypatch,
):
    run_case(case, inputs, capfd, monkeypatch)


_CAPPED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, 3 * 1024**3))
from napari_scigen.cli import main
codes = [main(["interpolate", path, "--missing", "1", "-o", path + ".out.tif", "-q"]) for path in sys.argv[1:]]
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("codes", *codes, "peak_kib", peak[0].split()[1] if peak else 0)
"""


def test_crafted_tiffs_of_every_codec_stay_small_under_a_memory_cap(tmp_path):
    paths = []
    for codec, (code, _, encode) in CODECS.items():
        for side in (20_000, 100_000):  # 381 MiB and 9.3 GiB declared
            path = tmp_path / f"{codec}-{side}.tif"
            crafted_tiff(path, side, code, encode(bytes(4096)))
            paths.append(str(path))
    lerc = tmp_path / "lerc-100000.tif"  # no bounded ratio: the memory check refuses it
    crafted_tiff(lerc, 100_000, 34887, imagecodecs.lerc_encode(np.zeros((64, 64), np.uint8)))
    paths.append(str(lerc))
    done = subprocess.run(
        [sys.executable, "-c", _CAPPED, *paths], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in done.stderr, done.stderr
    words = done.stdout.split()
    codes = words[1 : words.index("peak_kib")]
    assert codes == ["2"] * len(paths), done.stdout + done.stderr
    assert int(words[-1]) / 1024 < 300, done.stdout  # the interpreter, no pixel data
    assert not list(tmp_path.glob("*.out.tif"))


@pytest.mark.parametrize("compression", ["zlib", "png", "lzw", "packbits", "zstd", "lzma"])
def test_real_tiffs_of_zeros_in_every_bounded_codec_are_still_read(tmp_path, compression):
    from napari_scigen.core.io import read_volume

    volume = np.zeros((2, 1024, 1024), np.uint8)
    volume[1, 0, 0] = 7
    path = tmp_path / "zeros.tif"
    tifffile.imwrite(path, volume, compression=compression, rowsperstrip=1024)
    np.testing.assert_array_equal(read_volume(path).data, volume)
