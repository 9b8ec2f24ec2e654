"""``finetune-sd``, ``train-dcgan`` and ``sample-dcgan``: training on the user's volume.

* ``finetune-sd VOLUME -o ADAPTER_DIR``: LoRA fine-tuning of Stable Diffusion on tiles
  of the volume (``train --method sd-lora``); every SD command then takes
  ``--adapter ADAPTER_DIR``.
* ``train-dcgan VOLUME -o RUN_DIR`` / ``sample-dcgan --generator RUN_DIR -o OUT``: the
  DCGAN baseline (``train --method dcgan``, ``sample --method dcgan``).

All three are aliases of the registry-built commands of :mod:`.tasks`: the same run
functions, with the method fixed and only that engine's flags. Running a training
command again on the same folder resumes from its newest checkpoint; Ctrl-C stops with one.
"""

from __future__ import annotations

from .common import add_output_arguments
from .tasks import (
    add_method_arguments,
    add_training_arguments,
    run_sample_command,
    run_train_command,
)


def register(subparsers) -> None:
    """Add the ``finetune-sd``, ``train-dcgan`` and ``sample-dcgan`` subcommands."""
    finetune = subparsers.add_parser(
        "finetune-sd",
        help="LoRA fine-tuning of Stable Diffusion on tiles of a volume",
        description="Fine-tune Stable Diffusion on random tiles of the volume's slices with a "
        "domain prompt (LoRA on the UNet, optionally the text encoder and a new token; "
        "optional prior preservation). Writes an adapter folder that every SD command takes "
        "as --adapter; running again on the same folder resumes from its newest checkpoint. "
        "The same as train --method sd-lora.",
    )
    add_training_arguments(finetune, "adapter folder (created)")
    add_method_arguments(finetune, "train", "sd-lora")
    finetune.set_defaults(func=run_train_command)

    train = subparsers.add_parser(
        "train-dcgan",
        help="train the DCGAN baseline on the slices of a volume",
        description="Train (or continue training) a DCGAN on random crops of the volume's "
        "slices; checkpoints go to the run folder. The same as train --method dcgan.",
    )
    add_training_arguments(train, "run folder for checkpoints (created)")
    add_method_arguments(train, "train", "dcgan")
    train.set_defaults(func=run_train_command)

    sample = subparsers.add_parser(
        "sample-dcgan",
        help="random slices from a trained DCGAN",
        description="Generate N random slices with a DCGAN trained by train-dcgan, mapped back "
        "to the intensity range of its training data. The same as sample --method dcgan.",
    )
    add_method_arguments(sample, "sample", "dcgan")
    add_output_arguments(sample)
    sample.set_defaults(func=run_sample_command)
