"""Training infrastructure shared by every trainer (StyleGAN, DCGAN, LoRA, learned engines).

Importing this package imports no torch. One module per job:

* :mod:`.dataset`: :class:`~.dataset.SliceDataset`, random (cropped) slices of a
  windowed volume;
* :mod:`.augment`: :func:`~.augment.random_dihedral` (real slices) and
  :func:`~.augment.diff_augment` (before a discriminator);
* :mod:`.checkpoint`: the checkpoint layout (``checkpoint-<step>/`` with safetensors,
  a ``weights_only`` train state and JSON), save / load / latest / prune,
  :class:`~.checkpoint.CheckpointError`;
* :mod:`.resume`: what a run continues from and the refusal to resume on other data
  (content identity of the training volume, :mod:`napari_scigen.core.io.identity`);
* :mod:`.divergence`: :class:`~.divergence.TrainingDivergedError`, a user error;
* :mod:`.loop`: the step loop (progress, history, periodic checkpoints, a checkpoint
  when the run is cancelled), so a trainer keeps only its step function;
* :mod:`.hardware`: :func:`~.hardware.hardware_description`, recorded in checkpoints;
* :mod:`.preview`: :func:`~.preview.preview_grid` of generated slices;
* :mod:`.result`: :class:`~.result.TrainResult`, what every training engine returns.
"""
