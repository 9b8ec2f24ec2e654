"""A tiny, fast configuration of the learned interpolation engines for tests (CPU, seconds)."""

#: Random start, small crops and network, few steps, one thread.
TINY = {
    "init": "scratch",
    "train_steps": 12,
    "crop_size": 16,
    "batch_size": 4,
    "base_channels": 8,
    "tta": 2,
    "validation_slices": 2,
    "threads": 1,
    "device": "cpu",
}
