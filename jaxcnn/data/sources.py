"""Where the arrays come from: local files first, then TFDS, each reported.

Order (issue #2): 1. a local directory (`config.data_dir` or JAXCNN_DATA_DIR)
holding `<name>.npz`, the JPEG-bytes CIFAR-10 file, the original CIFAR-10
python/binary archives or folders, or MNIST IDX files; 2. a TFDS copy already
prepared; 3. a TFDS download. `digits` is embedded in scikit-learn.
All loaders return uint8 images [N, H, W, C] and int32 labels. This is the only
module under jaxcnn/ that reads environment variables.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import os
import pickle  # only the official CIFAR-10 python archive, restricted below
import tarfile
from typing import Callable

import numpy as np

from jaxcnn.data.datasets import DatasetInfo, get_info
from jaxcnn.errors import DataFormatError, DataNotFoundError

ENV_DATA_DIR = 'JAXCNN_DATA_DIR'
ENV_CACHE_DIR = 'JAXCNN_CACHE_DIR'


@dataclasses.dataclass
class Splits:
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  source: str  # human-readable description, logged at start


def resolve_data_dir(data_dir: str | None) -> str | None:
  return data_dir or os.environ.get(ENV_DATA_DIR) or None


def resolve_cache_dir(cache_dir: str | None) -> str:
  return (cache_dir or os.environ.get(ENV_CACHE_DIR)
          or os.path.join(os.path.expanduser('~'), '.cache', 'jaxcnn'))


def _as_nhwc(x: np.ndarray) -> np.ndarray:
  return x[..., None] if x.ndim == 3 else x


def _finish(info: DatasetInfo, xtr, ytr, xte, yte, source: str) -> Splits:
  """Normalises dtypes/shapes and rejects labels outside [0, num_classes)."""
  out = []
  for split, x, y in (('train', xtr, ytr), ('test', xte, yte)):
    x = _as_nhwc(np.asarray(x))
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if x.dtype != np.uint8:
      raise DataFormatError(f'{source}: {split} images must be uint8, got '
                            f'{x.dtype}')
    if x.shape[1:] != info.image_shape:
      raise DataFormatError(f'{source}: {split} images have shape '
                            f'{x.shape[1:]}, expected {info.image_shape} for '
                            f'{info.name}')
    if len(x) != len(y):
      raise DataFormatError(f'{source}: {split} has {len(x)} images but '
                            f'{len(y)} labels')
    if len(y) and (y.min() < 0 or y.max() >= info.num_classes):
      raise DataFormatError(
          f'{source}: {split} labels span [{y.min()}, {y.max()}] but '
          f'{info.name} has {info.num_classes} classes')
    out += [x, y.astype(np.int32)]
  return Splits(*out, source=source)


# ---------------------------------------------------------------- local files
def _load_npz(path: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except Exception as e:  # zipfile/ValueError/OSError: all mean "unreadable"
    raise DataFormatError(f'cannot read {path}: {e}') from None


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  from PIL import Image
  imgs = [np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert('RGB'))
          for a, b in zip(offsets[:-1], offsets[1:])]
  return np.stack(imgs)


def _cifar_jpeg(path: str, cache_dir: str, log: Callable[[str], None]):
  """Decodes ../shared/data/cifar10_jpeg_bytes.npz once, caching the arrays."""
  st = os.stat(path)
  key = hashlib.sha1(f'{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}'
                     .encode()).hexdigest()[:12]
  cache = os.path.join(cache_dir, f'cifar10_decoded_{key}.npz')
  if os.path.exists(cache):
    try:
      d = _load_npz(cache)
      return d['x_train'], d['y_train'], d['x_test'], d['y_test'], cache
    except (DataFormatError, KeyError):
      log(f'ignoring unreadable cache {cache}; decoding again')
  log(f'decoding {path} into {cache} (once, ~40 s per core)')
  d = _load_npz(path)
  try:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    parts = []
    # 'spawn': forking a process that already runs JAX's threads can deadlock.
    with ProcessPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                             mp_context=multiprocessing.get_context('spawn')
                             ) as ex:
      for split in ('train', 'test'):
        offs = d[f'{split}_offsets']
        cuts = np.linspace(0, len(offs) - 1, 9).astype(int)
        parts.append([ex.submit(_decode_jpegs, d[f'{split}_jpeg'],
                                offs[a:b + 1]) for a, b in
                      zip(cuts[:-1], cuts[1:])])
      xtr = np.concatenate([f.result() for f in parts[0]])
      xte = np.concatenate([f.result() for f in parts[1]])
  except KeyError as e:
    raise DataFormatError(f'{path} lacks key {e}; expected the JPEG-bytes '
                          'layout described in shared/data/README.md') from None
  os.makedirs(cache_dir, exist_ok=True)
  tmp = cache + f'.tmp{os.getpid()}.npz'
  np.savez(tmp, x_train=xtr, y_train=d['y_train'], x_test=xte,
           y_test=d['y_test'])
  os.replace(tmp, cache)  # atomic: a killed decode never leaves half a cache
  return xtr, d['y_train'], xte, d['y_test'], path


class _ArrayOnlyUnpickler(pickle.Unpickler):
  """Unpickles the CIFAR-10 python batches without running arbitrary code:
  only builtin containers and numpy array reconstruction are allowed."""
  _ALLOWED = {('numpy.core.multiarray', '_reconstruct'),
              ('numpy._core.multiarray', '_reconstruct'),
              ('numpy', 'ndarray'), ('numpy', 'dtype'),
              ('numpy.core.multiarray', 'scalar'),
              ('numpy._core.multiarray', 'scalar'), ('_codecs', 'encode')}

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise DataFormatError(f'refusing to unpickle {module}.{name}: the CIFAR-10 '
                          'python batches hold only arrays and lists')


def _cifar_python_batches(read: Callable[[str], bytes | None]):
  # The official python archive is pickled dicts; the restricted unpickler
  # keeps a tampered file from executing code.
  def batch(name):
    raw = read(name)
    if raw is None:
      return None
    d = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding='bytes').load()
    x = np.asarray(d[b'data'], np.uint8).reshape(-1, 3, 32, 32)
    return x.transpose(0, 2, 3, 1), np.asarray(d[b'labels'])
  parts = [batch(f'data_batch_{i}') for i in range(1, 6)]
  test = batch('test_batch')
  if test is None or any(p is None for p in parts):
    return None
  return (np.concatenate([p[0] for p in parts]),
          np.concatenate([p[1] for p in parts]), test[0], test[1])


def _cifar_binary_batches(read: Callable[[str], bytes | None]):
  """Fixed-length records: 1 label byte + 3072 CHW pixel bytes (R, G, B)."""
  def batch(name):
    raw = read(name)
    if raw is None:
      return None
    rec = np.frombuffer(raw, np.uint8)
    if rec.size % 3073:
      raise DataFormatError(f'{name}: size {rec.size} is not a multiple of '
                            'the 3073-byte CIFAR-10 record')
    rec = rec.reshape(-1, 3073)
    return rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), rec[:, 0]
  parts = [batch(f'data_batch_{i}.bin') for i in range(1, 6)]
  test = batch('test_batch.bin')
  if test is None or any(p is None for p in parts):
    return None
  return (np.concatenate([p[0] for p in parts]),
          np.concatenate([p[1] for p in parts]), test[0], test[1])


def _dir_reader(folder: str):
  def read(name):
    p = os.path.join(folder, name)
    if not os.path.exists(p):
      return None
    with open(p, 'rb') as f:
      return f.read()
  return read


def _tar_reader(path: str):
  try:
    tar = tarfile.open(path)
    members = {os.path.basename(m.name): m for m in tar.getmembers()
               if m.isfile()}
  except (tarfile.TarError, OSError, EOFError) as e:
    raise DataFormatError(f'cannot read archive {path}: {e}') from None

  def read(name):
    m = members.get(name)
    return None if m is None else tar.extractfile(m).read()
  return read


def _read_idx(path: str) -> np.ndarray:
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    raw = f.read()
  ndim = raw[3]
  dims = np.frombuffer(raw[4:4 + 4 * ndim], '>u4').astype(int)
  data = np.frombuffer(raw[4 + 4 * ndim:], np.uint8)
  if raw[2] != 0x08 or data.size != np.prod(dims):
    raise DataFormatError(f'{path} is not a uint8 IDX file')
  return data.reshape(dims)


def _find_idx(folder: str, stem: str) -> str | None:
  for name in (stem, stem + '.gz', stem.replace('-idx', '.idx')):
    p = os.path.join(folder, name)
    if os.path.exists(p):
      return p
  return None


def load_local(info: DatasetInfo, data_dir: str, cache_dir: str,
               log: Callable[[str], None]) -> Splits | None:
  """Returns the splits from files in `data_dir`, or None if none are there."""
  npz = os.path.join(data_dir, f'{info.name}.npz')
  if os.path.exists(npz):
    d = _load_npz(npz)
    missing = {'x_train', 'y_train', 'x_test', 'y_test'} - set(d)
    if missing:
      raise DataFormatError(f'{npz} lacks keys {sorted(missing)}')
    return _finish(info, d['x_train'], d['y_train'], d['x_test'], d['y_test'],
                   f'local npz {npz}')
  if info.name == 'cifar10':
    jpeg = os.path.join(data_dir, 'cifar10_jpeg_bytes.npz')
    if os.path.exists(jpeg):
      *arrays, src = _cifar_jpeg(jpeg, cache_dir, log)
      return _finish(info, *arrays, f'local CIFAR-10 JPEG bytes {jpeg} '
                     f'(decoded cache {src})')
    candidates = [
        ('cifar-10-batches-py', _dir_reader, _cifar_python_batches),
        ('cifar-10-python.tar.gz', _tar_reader, _cifar_python_batches),
        ('cifar-10-batches-bin', _dir_reader, _cifar_binary_batches),
        ('cifar-10-binary.tar.gz', _tar_reader, _cifar_binary_batches),
    ]
    for name, reader, parse in candidates:
      p = os.path.join(data_dir, name)
      if os.path.exists(p):
        arrays = parse(reader(p))
        if arrays is None:
          raise DataFormatError(f'{p} is missing some of the 6 CIFAR-10 batches')
        return _finish(info, *arrays, f'local CIFAR-10 archive {p}')
  if info.name in ('mnist', 'fashion_mnist'):
    stems = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
             't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')
    for folder in (os.path.join(data_dir, info.name), data_dir):
      paths = [_find_idx(folder, s) for s in stems]
      if all(paths):
        arrays = [_read_idx(p) for p in paths]
        return _finish(info, *arrays, f'local IDX files in {folder}')
  return None


# ------------------------------------------------------------------- embedded
def load_digits() -> Splits:
  from sklearn.datasets import load_digits as sk_digits
  d = sk_digits()
  # Pixel values are 0..16; scale to the 0..255 range every pipeline expects.
  x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  y = d.target
  info = get_info('digits')
  n = info.num_train
  return _finish(info, x[:n], y[:n], x[n:], y[n:],
                 'scikit-learn embedded digits (8x8)')


# ----------------------------------------------------------------------- TFDS
def load_tfds(info: DatasetInfo, tfds_data_dir: str | None,
              download: bool) -> Splits:
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')  # TF only reads data; JAX owns GPUs
  import tensorflow_datasets as tfds
  # Batched reads rather than batch_size=-1, which aborts inside TF 2.21 on
  # TFDS mock data (std::length_error in the generator dataset).
  splits = tfds.load(info.tfds_name, split=['train', 'test'],
                     as_supervised=True, data_dir=tfds_data_dir,
                     download=download)

  def to_numpy(ds):
    xs, ys = [], []
    for x, y in tfds.as_numpy(ds.batch(4096)):
      xs.append(x)
      ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)
  (xtr, ytr), (xte, yte) = map(to_numpy, splits)
  where = 'download' if download else 'prepared copy'
  return _finish(info, xtr, ytr, xte, yte,
                 f'TFDS {where} of {info.tfds_name} '
                 f'(data_dir={tfds_data_dir or "default"})')


def load(name: str, *, data_dir: str | None = None, cache_dir: str | None = None,
         tfds_data_dir: str | None = None, allow_download: bool = True,
         log: Callable[[str], None] = logging.info) -> Splits:
  """Tries each source in order; raises one DataNotFoundError listing them."""
  info = get_info(name)
  if name == 'digits':
    return load_digits()
  tried = []
  local = resolve_data_dir(data_dir)
  if local:
    if not os.path.isdir(local):
      tried.append(f'local directory {local}: does not exist')
    else:
      splits = load_local(info, local, resolve_cache_dir(cache_dir), log)
      if splits is not None:
        return splits
      tried.append(f'local directory {local}: no {name}.npz or other known '
                   f'{name} files')
  else:
    tried.append(f'local directory: none set (config.data_dir or '
                 f'${ENV_DATA_DIR})')
  for download in (False, True) if allow_download else (False,):
    try:
      return load_tfds(info, tfds_data_dir, download)
    except Exception as e:  # TFDS raises many types; all mean "not here"
      first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ''
      what = 'download' if download else 'prepared copy'
      tried.append(f'TFDS {what}: {type(e).__name__}: {first}')
  if not allow_download:
    tried.append('TFDS download: skipped (dataset.allow_download=False)')
  raise DataNotFoundError(
      f'could not load dataset {name!r}. Tried, in order: '
      + '; '.join(f'({i + 1}) {t}' for i, t in enumerate(tried))
      + f'. Fix: put {name}.npz (x_train, y_train, x_test, y_test) in a '
      f'directory and pass --config.data_dir=DIR or set {ENV_DATA_DIR}=DIR, '
      'or run where TFDS can download it.')
