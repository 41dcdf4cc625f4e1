"""Data: sources (local files, TFDS), dataset registry, host pipeline, on-device augmentation."""
