"""Train the embedded default StyleGAN2 generator on the procedural rock phantom.

The default generator shipped in ``napari_scigen/data/`` was produced with::

    nice -n 10 python benchmarks/train_default_stylegan.py \\
        --run-dir /tmp/stylegan_default_run --minutes 60 --threads 2

followed by ``--export-only`` (done automatically at the end of a run). The run
is resumable: start the same command again to continue from the newest
checkpoint; stop it any time (Ctrl-C or ``--minutes``) and a checkpoint is kept.
See ``docs/stylegan_training.md``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from napari_scigen.core.progress import Cancelled, CancelToken
from napari_scigen.engines.stylegan.default import (
    DEFAULT_PHANTOM,
    DEFAULT_TRAIN_PARAMS,
    default_generator_path,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/stylegan_default_run"))
    parser.add_argument(
        "--minutes", type=float, default=60.0, help="stop (with a checkpoint) after this long"
    )
    parser.add_argument("--train-steps", type=int, default=DEFAULT_TRAIN_PARAMS.train_steps)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--export", type=Path, default=default_generator_path(), help="exported .safetensors"
    )
    parser.add_argument(
        "--export-only", action="store_true", help="only export the newest checkpoint"
    )
    parser.add_argument(
        "--command-note", default="", help="how the run was launched (stored in the JSON)"
    )
    args = parser.parse_args(argv)

    import torch

    from napari_scigen import api
    from napari_scigen.core.phantoms import make_rock_volume
    from napari_scigen.core.progress import drain
    from napari_scigen.engines._training.hardware import cpu_model
    from napari_scigen.engines.stylegan.checkpoint import export_generator, read_metadata

    torch.set_num_threads(args.threads)
    if not args.export_only:
        volume = make_rock_volume(**DEFAULT_PHANTOM).volume
        cancel = CancelToken()
        timer = threading.Timer(args.minutes * 60.0, cancel.cancel)
        timer.daemon = True
        timer.start()
        started = time.time()

        def report(event):
            if event.step % 25 == 0 or event.preview is not None:
                elapsed = (time.time() - started) / 60
                print(f"[{elapsed:6.1f} min] {event.message}", flush=True)
                if event.preview is not None:
                    import numpy as np

                    np.save(args.run_dir / "preview_latest.npy", event.preview)

        args.run_dir.mkdir(parents=True, exist_ok=True)
        params = DEFAULT_TRAIN_PARAMS.replace(train_steps=args.train_steps)
        try:
            drain(
                api.train_job(
                    volume, out_dir=str(args.run_dir), params=params, resume=True, cancel=cancel
                ),
                on_progress=report,
            )
        except (Cancelled, KeyboardInterrupt):
            print("stopped; checkpoint kept", flush=True)
        timer.cancel()

    meta = read_metadata(sorted(args.run_dir.glob("checkpoint-*"))[-1])
    note = {
        "default_generator": {
            "trained_on": "napari_scigen.core.phantoms.make_rock_volume(**DEFAULT_PHANTOM)",
            "phantom": DEFAULT_PHANTOM,
            "command": args.command_note
            or "nice -n 10 python benchmarks/train_default_stylegan.py --minutes 60 --threads 2",
            "steps": meta["step"],
            "images_seen": meta["training"]["images_seen"],
            "wall_seconds": meta["training"]["wall_seconds"],
            "hardware": dict(
                meta["training"]["hardware"],
                cpu_model=meta["training"]["hardware"].get("cpu_model") or cpu_model(),
                shared="2 cores shared with other jobs; training ran under nice -n 10",
            ),
        }
    }
    path = export_generator(args.run_dir, args.export, extra_metadata=note)
    print(f"exported {path} ({path.stat().st_size / 1e6:.2f} MB) at step {meta['step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
