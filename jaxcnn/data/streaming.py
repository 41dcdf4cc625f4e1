"""Streaming input on grain: sharded, exactly resumable, multiprocess decode.

For datasets too large to hold as arrays (imagenet2012 through TFDS, image
folders); the in-memory datasets keep data/pipeline.py. Either way the device
gets uint8 batches and data/augment.py does the rest, so the step is the same.

Order: the same as pipeline.train_rows, batch for batch. Global batch `s` is
rows [i*B, (i+1)*B) of epoch e's permutation (pipeline.epoch_permutation,
seeded by (seed, e)), with s = e * steps_per_epoch + i; process p of P reads
only its slice [p*B/P, (p+1)*B/P), sorted. So batch s is a pure function of
(seed, s): a resumed stream yields exactly what an uninterrupted one does,
the union over processes is the global batch (disjoint), and the order does
not depend on the number of workers or processes. grain does the rest:
MapDataset (range -> rows -> decode -> batch), ReadOptions (threads and
prefetch per process), mp_prefetch (worker processes, each computing whole
batches, interleaved back in order).

grain's own IndexSampler/DataLoader is not used for the order: it shards
records contiguously per host (each host sees a fixed 1/P of the data) and
its checkpoint depends on the worker count. The state here is the next step
(get_state/set_state, JSON), valid under any worker or process count.

Entry points for the train loop: is_streaming, dataset_info, open_train,
open_eval (docs/data.md shows the integration).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from typing import Callable

import grain
import numpy as np
from absl import flags

from jaxcnn.data import datasets, imagefolder, pipeline, sources
from jaxcnn.data.stream_sources import ArraySource, TfdsSource

STATE_KIND = 'jaxcnn.streaming.train/1'
_FAR_STEPS = 10 ** 12  # an "infinite" stream, lazily indexed
_CROP_TAG = 0x63726F70  # separates crop seeds from epoch-permutation seeds
Log = Callable[[str], None]


@functools.lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  perm = pipeline.epoch_permutation(n, seed, epoch)
  perm.flags.writeable = False  # shared between grain's reader threads
  return perm


@functools.lru_cache(maxsize=256)
def _step_rows(n: int, global_batch: int, seed: int, process_index: int,
               process_count: int, step: int) -> np.ndarray:
  """This process's sorted rows of global batch `step` (pipeline.train_rows)."""
  epoch, i = divmod(step, n // global_batch)
  rows = _permutation(n, seed, epoch)[i * global_batch:(i + 1) * global_batch]
  local = global_batch // process_count
  rows = np.sort(rows[process_index * local:(process_index + 1) * local])
  rows.flags.writeable = False
  return rows


@dataclasses.dataclass(frozen=True)
class _TrainRow:
  """Position k of this process's stream -> (step, row of the source)."""
  n: int
  global_batch: int
  seed: int
  process_index: int
  process_count: int

  def __call__(self, k: int) -> tuple[int, int]:
    step, j = divmod(int(k), self.global_batch // self.process_count)
    rows = _step_rows(self.n, self.global_batch, self.seed,
                      self.process_index, self.process_count, step)
    return step, int(rows[j])


@dataclasses.dataclass(frozen=True)
class _LoadTrain:
  source: object
  seed: int
  random_resized: bool

  def __call__(self, step_row: tuple[int, int]) -> dict:
    step, row = step_row
    rng = (np.random.default_rng([self.seed, _CROP_TAG, step, row])
           if self.random_resized else None)
    return self.source.load(row, rng)


@dataclasses.dataclass(frozen=True)
class _EvalRow:
  """Position k -> (row, valid): global batch b's slice for this process,
  rows past the end padded with row 0 (pipeline.eval_batches)."""
  n: int
  global_batch: int
  process_index: int
  process_count: int

  def __call__(self, k: int) -> tuple[int, bool]:
    local = self.global_batch // self.process_count
    b, j = divmod(int(k), local)
    g = b * self.global_batch + self.process_index * local + j
    return (g, True) if g < self.n else (0, False)


@dataclasses.dataclass(frozen=True)
class _LoadEval:
  source: object

  def __call__(self, row_valid: tuple[int, bool]) -> dict:
    row, valid = row_valid
    rec = self.source.load(row)
    # A bad image's stand-in is not the image: it counts zero times.
    return {**rec, 'mask': float(valid and not rec['skipped'])}


def _stack(records) -> dict:
  """grain batch_fn: uint8 images, int32 labels, the skipped names as one
  tuple (popped by the stream before the batch leaves it)."""
  out = {'image': np.stack([r['image'] for r in records]),
         'label': np.array([r['label'] for r in records], np.int32),
         'skipped': tuple(n for r in records for n in r['skipped'])}
  if 'mask' in records[0]:
    out['mask'] = np.array([r['mask'] for r in records], np.float32)
  return out


def _own(batch: dict) -> dict:
  """Plain arrays: from workers they arrive in shared memory, which is
  freed only when its array is collected; a copy frees it now."""
  return {k: np.array(v) if isinstance(v, np.ndarray) else v
          for k, v in batch.items()}


def _worker_init(worker_index: int, worker_count: int) -> None:
  """grain worker processes only decode: keep JAX and TF off accelerators."""
  del worker_index, worker_count
  os.environ['CUDA_VISIBLE_DEVICES'] = ''
  os.environ['JAX_PLATFORMS'] = 'cpu'


def resolve_workers(workers: int) -> int:
  """-1: one decode process per two cores (the step needs the others)."""
  return max(1, (os.cpu_count() or 2) // 2) if workers < 0 else workers


def _threads(workers: int, threads: int | None) -> int:
  """Reader threads per process: 2 in the train process (decode overlaps
  the step), 1 in each worker (one core each)."""
  return (2 if workers == 0 else 1) if threads is None else threads


def _iterate(ds: grain.MapDataset, workers: int, threads: int):
  """The grain iterator: `threads` readers per process, `workers` processes
  (0: in this process; PIL drops the GIL while decoding)."""
  it = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=threads, prefetch_buffer_size=2 * max(threads, 1)))
  if workers > 0:
    # grain's worker start reads absl flags; outside an absl app (tests,
    # notebooks, scripts) they were never parsed: take their defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=workers, per_worker_buffer_size=2),
        worker_init_fn=_worker_init)
  return iter(it)


class _SkipReport:
  """Counts and names, once each, the undecodable images a stream met."""

  def __init__(self, what: str, log: Log):
    self.what, self.log, self.names = what, log, set()

  def __call__(self, names) -> None:
    for name in names:
      if name not in self.names:
        self.names.add(name)
        self.log(f'{self.what}: skipped undecodable image {name}: replaced '
                 f'by the next decodable one ({len(self.names)} so far)')


def _check_layout(global_batch: int, process_index: int,
                  process_count: int) -> None:
  if global_batch % process_count or not 0 <= process_index < process_count:
    raise ValueError(f'batch size {global_batch} must divide over '
                     f'{process_count} processes (process {process_index})')


class TrainStream:
  """Infinite iterator of this process's {'image', 'label'} train batches."""

  def __init__(self, source, global_batch: int, seed: int,
               start_step: int = 0, process_index: int = 0,
               process_count: int = 1, workers: int = 0,
               random_resized: bool = False, threads: int | None = None,
               log: Log = logging.warning):
    _check_layout(global_batch, process_index, process_count)
    if len(source) < global_batch:
      raise ValueError(f'batch size {global_batch} exceeds the '
                       f'{len(source)} training examples')
    self.source, self.global_batch, self.seed = source, global_batch, seed
    self.num_examples = len(source)
    self.steps_per_epoch = self.num_examples // global_batch
    self._layout = (process_index, process_count)
    self.workers = resolve_workers(workers)
    self._threads = _threads(self.workers, threads)
    self._random_resized = random_resized
    self._step, self._it = int(start_step), None
    self.skipped = _SkipReport('train data', log)

  def _open(self):
    local = self.global_batch // self._layout[1]
    ds = grain.MapDataset.range(self._step * local,
                                (self._step + _FAR_STEPS) * local)
    ds = ds.map(_TrainRow(self.num_examples, self.global_batch, self.seed,
                          *self._layout))
    ds = ds.map(_LoadTrain(self.source, self.seed, self._random_resized))
    ds = ds.batch(local, drop_remainder=True, batch_fn=_stack)
    self._it = _iterate(ds, self.workers, self._threads)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    if self._it is None:
      self._open()
    batch = _own(next(self._it))
    self._step += 1
    self.skipped(batch.pop('skipped'))
    return batch

  @property
  def step(self) -> int:
    """The step of the next batch."""
    return self._step

  def get_state(self) -> dict:
    """JSON-able: the next step and what the order depends on."""
    return {'kind': STATE_KIND, 'next_step': self._step, 'seed': self.seed,
            'global_batch': self.global_batch,
            'num_examples': self.num_examples,
            'source': self.source.fingerprint}

  def set_state(self, state: dict) -> None:
    """Continues at state['next_step']; refuses a state of other data."""
    mine = self.get_state()
    wrong = [f'{k}: saved {state.get(k)!r}, now {v!r}' for k, v in mine.items()
             if k != 'next_step' and state.get(k) != v]
    if wrong:
      raise ValueError('train iterator state does not fit this stream ('
                       + '; '.join(wrong) + ')')
    self.close()
    self._step = int(state['next_step'])

  def close(self) -> None:
    if self._it is not None and hasattr(self._it, 'close'):
      self._it.close()
    self._it = None


class EvalStream:
  """Every example exactly once per pass (padded + 'mask'); re-iterable."""

  def __init__(self, source, global_batch: int, process_index: int = 0,
               process_count: int = 1, workers: int = 0,
               threads: int | None = None, log: Log = logging.warning):
    _check_layout(global_batch, process_index, process_count)
    self.source, self.global_batch = source, global_batch
    self._layout = (process_index, process_count)
    self.workers = resolve_workers(workers)
    self._threads = _threads(self.workers, threads)
    self.skipped = _SkipReport('eval data', log)

  def __len__(self) -> int:
    return math.ceil(len(self.source) / self.global_batch)

  def __iter__(self):
    local = self.global_batch // self._layout[1]
    ds = grain.MapDataset.range(len(self) * local)
    ds = ds.map(_EvalRow(len(self.source), self.global_batch, *self._layout))
    ds = ds.map(_LoadEval(self.source)).batch(local, batch_fn=_stack)
    it = _iterate(ds, self.workers, self._threads)
    try:
      for batch in map(_own, it):
        self.skipped(batch.pop('skipped'))
        yield batch
    finally:
      if hasattr(it, 'close'):
        it.close()


# ----------------------------------------------------------- from a config
def is_streaming(config) -> bool:
  """True for datasets read by this module (imagenet2012, imagefolder)."""
  return datasets.get_info(config.dataset.name).streaming


@functools.lru_cache(maxsize=2)
def _scan(root: str, verify: str, on_bad: str):
  return imagefolder.scan(root, verify, on_bad)


def open_sources(config):
  """(train source, eval source) of the config's dataset."""
  d, info = config.dataset, datasets.get_info(config.dataset.name)
  args = (d.image_size, d.resize_mode, d.on_bad_image)
  if info.name == 'imagefolder':
    train, val = _scan(os.path.abspath(d.root or ''), d.verify_images,
                       d.on_bad_image)
    return (imagefolder.ImageFolderSource(train, *args),
            imagefolder.ImageFolderSource(val, *args))
  if info.streaming:
    return (TfdsSource(info.tfds_name, 'train', config.tfds_data_dir, *args),
            TfdsSource(info.tfds_name, info.eval_split, config.tfds_data_dir,
                       *args))
  s = sources.load(info.name, data_dir=config.data_dir,
                   cache_dir=config.cache_dir,
                   tfds_data_dir=config.tfds_data_dir,
                   allow_download=d.allow_download)
  return (ArraySource(s.x_train, s.y_train, info.class_names, info.name),
          ArraySource(s.x_test, s.y_test, info.class_names, info.name))


def dataset_info(config) -> datasets.DatasetInfo:
  """The registry entry with what a streaming config decides: image size
  and (image folders) the classes found under dataset.root."""
  info = datasets.get_info(config.dataset.name)
  if not info.streaming:
    return info
  size = config.dataset.image_size
  info = dataclasses.replace(info, image_shape=(size, size, 3))
  if info.name == 'imagefolder':
    info = dataclasses.replace(
        info, class_names=imagefolder.class_names(config.dataset.root))
  return info


def locate_imagenet(tfds_data_dir: str | None = None
                    ) -> tuple[str, str] | None:
  """Where ImageNet is on this machine: ('imagenet2012', TFDS dir) when
  TFDS has prepared it, ('imagefolder', ROOT) when $JAXCNN_IMAGENET_DIR
  holds train/ and val/, else None. Listings only: nothing is read."""
  where = sources.tfds_dir(tfds_data_dir)
  base = os.path.join(where, 'imagenet2012')
  if os.path.isdir(base) and any(
      os.path.exists(os.path.join(base, v, 'dataset_info.json'))
      for v in os.listdir(base)):
    return 'imagenet2012', where
  root = sources.resolve_imagenet_dir()
  if root and os.path.isdir(os.path.join(root, 'train')):
    return 'imagefolder', root
  return None


def open_train(config, start_step: int = 0, process_index: int = 0,
               process_count: int = 1, log: Log = logging.warning
               ) -> TrainStream:
  """This process's train batches from `start_step` (see TrainStream)."""
  train, _ = open_sources(config)
  return TrainStream(train, config.batch_size, config.seed, start_step,
                     process_index, process_count, config.dataset.workers,
                     config.dataset.random_resized_crop, log=log)


def open_eval(config, batch_size: int | None = None, process_index: int = 0,
              process_count: int = 1, log: Log = logging.warning
              ) -> EvalStream:
  _, val = open_sources(config)
  return EvalStream(val, batch_size or config.eval_batch_size, process_index,
                    process_count, config.dataset.workers, log=log)
