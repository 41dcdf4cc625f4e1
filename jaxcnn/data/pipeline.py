"""Host-side batching: deterministic shuffles, fixed shapes, device prefetch.

The data position is a pure function of (seed, step), so a resumed run needs no
iterator state: batch `s` of the run is always the same examples. Each process
reads only its own rows of every global batch (disjoint shards whose union is
the epoch), as multi-host `jax.distributed` training requires.
"""
from __future__ import annotations

import collections
import threading
from typing import Callable, Iterator

import jax
import numpy as np

Batch = dict[str, np.ndarray]


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def train_rows(num_examples: int, global_batch: int, seed: int,
               start_step: int = 0, process_index: int = 0,
               process_count: int = 1) -> Iterator[np.ndarray]:
  """Infinite stream of this process's row indices of each global batch.

  The last partial batch of an epoch is dropped so every batch has the same
  shape and the train step compiles once.
  """
  steps_per_epoch = num_examples // global_batch
  if steps_per_epoch == 0:
    raise ValueError(f'batch size {global_batch} exceeds the {num_examples} '
                     'training examples')
  local = global_batch // process_count
  step = start_step
  while True:
    epoch, i = divmod(step, steps_per_epoch)
    perm = epoch_permutation(num_examples, seed, epoch)
    while i < steps_per_epoch:
      rows = perm[i * global_batch:(i + 1) * global_batch]
      yield np.sort(rows[process_index * local:(process_index + 1) * local])
      i += 1
      step += 1


def train_batches(images: np.ndarray, labels: np.ndarray, global_batch: int,
                  seed: int, start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> Iterator[Batch]:
  """Infinite stream of this process's slice of each global batch."""
  for rows in train_rows(len(images), global_batch, seed, start_step,
                         process_index, process_count):
    yield {'image': images[rows], 'label': labels[rows]}


def train_row_batches(num_examples: int, global_batch: int, seed: int,
                      start_step: int = 0, process_index: int = 0,
                      process_count: int = 1) -> Iterator[Batch]:
  """train_rows as {'rows': int32} batches, for input.device_data."""
  for rows in train_rows(num_examples, global_batch, seed, start_step,
                         process_index, process_count):
    yield {'rows': rows.astype(np.int32)}


def eval_batches(images: np.ndarray, labels: np.ndarray, global_batch: int,
                 process_index: int = 0, process_count: int = 1
                 ) -> Iterator[Batch]:
  """Every example exactly once; the last batch is zero-padded and masked."""
  n = len(images)
  local = global_batch // process_count
  for start in range(0, n, global_batch):
    idx = np.arange(start, start + global_batch)
    idx = idx[process_index * local:(process_index + 1) * local]
    mask = idx < n
    idx = np.where(mask, idx, 0)
    yield {'image': images[idx], 'label': labels[idx],
           'mask': mask.astype(np.float32)}


def prefetch(it: Iterator[Batch], put: Callable[[Batch], object],
             size: int = 2) -> Iterator[object]:
  """Moves batches to the device `size` steps ahead, on a background thread.

  The host copy and transfer overlap with the running step, so the step never
  waits on numpy indexing. Exceptions in the producer re-raise in the consumer.
  """
  q: collections.deque = collections.deque()
  cond = threading.Condition()
  done = object()
  stop = threading.Event()

  def producer():
    try:
      for batch in it:
        if stop.is_set():
          return
        item = put(batch)
        with cond:
          while len(q) >= size and not stop.is_set():
            cond.wait()
          if stop.is_set():
            return
          q.append(item)
          cond.notify_all()
    except BaseException as e:  # pylint: disable=broad-except
      with cond:
        q.append(e)
        cond.notify_all()
      return
    with cond:
      q.append(done)
      cond.notify_all()

  thread = threading.Thread(target=producer, daemon=True)
  thread.start()
  try:
    while True:
      with cond:
        while not q:
          cond.wait()
        item = q.popleft()
        cond.notify_all()
      if item is done:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    # Join, so no daemon thread is inside a JAX call at interpreter exit
    # (that aborts the process).
    stop.set()
    with cond:
      cond.notify_all()
    thread.join(timeout=60)


def put_global(batch: Batch, sharding: jax.sharding.Sharding) -> dict:
  """Assembles per-process rows into one global array sharded over devices."""
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in batch.items()}
