"""How many images go to a model at once: one rule for the engine's batches of perturbed images and the sizes a
model's compiled function is traced for. NumPy only (the engine imports it)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Pixels per batch on a CPU: 256 images at 64x64, 64 at 224x224 (larger batches of big images run slower there).
BATCH_PIXEL_BUDGET = 1 << 22
# On a GPU larger batches keep it busy: 512 at 224x224 (about 300 MB of float32 perturbed images in host memory).
GPU_BATCH_PIXEL_BUDGET = 1 << 25
MIN_BATCH = 16
MAX_BATCH = {"cpu": 256, "gpu": 1024}


def batch_for(image_shape: Sequence[int], device: str = "cpu") -> int:
    """A power of two within the device's pixel budget, at least MIN_BATCH and at most MAX_BATCH[device]."""
    budget = GPU_BATCH_PIXEL_BUDGET if device == "gpu" else BATCH_PIXEL_BUDGET
    fitting = budget // (image_shape[0] * image_shape[1])
    return int(min(MAX_BATCH[device], max(MIN_BATCH, 2 ** int(np.log2(max(fitting, 1))))))


def batch_buckets(batch_size: int) -> list[int]:
    """Batch sizes a compiled function is fed, up to `batch_size` and itself: a shorter batch is padded up to the next
    one, so that the runtime reuses a few kernels instead of making one per length. Powers of two and their halfway
    points (1, 2, 3, 4, 6, 8, 12, 16, 24, ...), so that padding costs at most a third of a batch: an explanation's
    last batch is often one image (513 = 32 x 16 + 1), and its faithfulness curves are 11 each."""
    sizes, size = [], 1
    while size < batch_size:
        sizes.append(size)
        if size >= 2 and size + size // 2 < batch_size:
            sizes.append(size + size // 2)
        size *= 2
    return sizes + [batch_size]
