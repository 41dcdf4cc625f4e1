"""The training set resident on the accelerator (`config.input.device_data`).

A fast GPU step on a small net (the tutorial net: ~0.6 ms on an H100) is
quicker than the host can gather, copy and transfer a uint8 batch, so the
host pipeline, not the step, sets the pace. Here the uint8 train set is put
on every device once (CIFAR-10: 150 MB) and each step receives only its row
indices; the gather runs inside the jitted step, before the augmentation that
was already there. The rows come from the same `pipeline.train_rows`, so a
run sees exactly the batches of the host pipeline, and results are identical.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import numpy as np

# Past this the replicated copy crowds out activations on a 16 GB device;
# such datasets stay on the host pipeline.
MAX_BYTES = 4 << 30


def put(images: np.ndarray, labels: np.ndarray,
        sharding: jax.sharding.Sharding) -> dict:
  """The whole split on every device (`sharding` replicated)."""
  nbytes = images.nbytes + labels.nbytes
  if nbytes > MAX_BYTES:
    raise ValueError(
        f'input.device_data: the train split is {nbytes / 2**30:.1f} GiB, '
        f'over the {MAX_BYTES / 2**30:.0f} GiB kept on each device; set '
        'input.device_data=False to stream batches from the host')
  return {'image': jax.device_put(images, sharding),
          'label': jax.device_put(labels, sharding)}


def gather(data: dict, rows: jax.Array) -> dict:
  return {'image': data['image'][rows], 'label': data['label'][rows]}


def gathering(fn: Callable) -> Callable:
  """`fn(state, batch, *rest)` -> `step(state, {'rows'}, data, *rest)`."""
  @functools.wraps(fn)
  def step(state, batch, data, *rest):
    return fn(state, gather(data, batch['rows']), *rest)
  return step
