"""Where the arrays come from: local files first, then TFDS, each reported.

Order (issue #2): 1. a local directory (`config.data_dir` or JAXCNN_DATA_DIR)
holding `<name>.npz`, the JPEG-bytes CIFAR-10 file, the original CIFAR-10
python/binary archives or folders, or MNIST IDX files; 2. a TFDS copy already
prepared; 3. a TFDS download. `digits` is embedded in scikit-learn.
All loaders return uint8 images [N, H, W, C] and int32 labels, checked by
data/validate.py against the registry: a wrong file is a one-line
DataFormatError naming the file and field, raised before any compile.
This is the only module under jaxcnn/ that reads environment variables.
"""
from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import io
import logging
import multiprocessing
import os
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

import numpy as np
from PIL import Image

from jaxcnn import paths
from jaxcnn.data import validate
from jaxcnn.data.datasets import DatasetInfo, get_info
# Splits and the archive readers live in local_files.py; re-exported here so
# `sources.Splits` and `sources.load` stay the public API.
from jaxcnn.data.local_files import (Splits, _finish, _load_npz, _local_npz,
                                     _one_line, load_archive)
from jaxcnn.errors import DataFormatError, DataNotFoundError

ENV_DATA_DIR = 'JAXCNN_DATA_DIR'
ENV_CACHE_DIR = paths.ENV_CACHE_DIR
ENV_IMAGENET_DIR = 'JAXCNN_IMAGENET_DIR'
fail = validate.fail
__all__ = ['Splits', 'load', 'load_local', 'load_digits', 'load_tfds',
           'download_unreachable', 'resolve_data_dir', 'resolve_cache_dir']


def resolve_data_dir(data_dir: str | None) -> str | None:
  return data_dir or os.environ.get(ENV_DATA_DIR) or None


def resolve_imagenet_dir() -> str | None:
  """$JAXCNN_IMAGENET_DIR: an ImageNet image-folder root (docs/data.md)."""
  return os.environ.get(ENV_IMAGENET_DIR) or None


def resolve_cache_dir(cache_dir: str | None) -> str:
  return cache_dir or paths.cache_root()


# ----------------------------------------------------- CIFAR-10 JPEG bytes npz
_JPEG_KEYS = ('train_jpeg', 'train_offsets', 'y_train', 'test_jpeg',
              'test_offsets', 'y_test')
_JPEG_FIX = 'rebuild the file as described in shared/data/README.md'
_POOL_MIN_IMAGES = 4096  # fewer: decoding in-process beats spawning workers


def _jpeg_index(info: DatasetInfo, d, path: str, split: str, log):
  """Checks one split's bytes, offsets and labels before the slow decode."""
  blob, offs = d[f'{split}_jpeg'], d[f'{split}_offsets']
  y = validate.labels(info, d[f'y_{split}'], f'{path}: y_{split}', log)
  if blob.dtype != np.uint8 or blob.ndim != 1:
    fail(f'{path}: {split}_jpeg', f'is {blob.dtype} of shape '
         f'{list(blob.shape)}, not 1-D uint8 bytes', _JPEG_FIX)
  where = f'{path}: {split}_offsets'
  if offs.dtype.kind not in 'iu' or offs.ndim != 1:
    fail(where, f'is {offs.dtype} of shape {list(offs.shape)}, not 1-D '
         'integers', _JPEG_FIX)
  if len(y) == 0:
    fail(f'{path}: y_{split}', f'holds no labels (empty {split} data)',
         _JPEG_FIX)
  if len(offs) != len(y) + 1:
    fail(where, f'has {len(offs)} entries but y_{split} has {len(y)} labels '
         f'(expected {len(y) + 1})', _JPEG_FIX)
  if offs[0] < 0 or offs[-1] > blob.size:
    fail(where, f'points outside {split}_jpeg (offsets span [{offs.min()}, '
         f'{offs.max()}], {blob.size} bytes)', _JPEG_FIX)
  empty = np.flatnonzero(np.diff(offs) <= 0)
  if empty.size:
    i = int(empty[0])
    fail(f'{path}: {split} image {i}', f'has no bytes (offsets '
         f'{offs[i]}..{offs[i + 1]}), so it is not a valid JPEG', _JPEG_FIX)
  return y


def _decode_jpegs(chunk: np.ndarray, offs: np.ndarray, first: int, split: str,
                  path: str, shape: tuple[int, int, int]) -> np.ndarray:
  """Decodes chunk[offs[i]-offs[0]:offs[i+1]-offs[0]]; `first` is the split
  index of image 0, so an error names the image as in the file."""
  out = np.empty((len(offs) - 1, *shape), np.uint8)
  for i, (a, b) in enumerate(zip(offs[:-1] - offs[0], offs[1:] - offs[0])):
    where = f'{path}: {split} image {first + i} (bytes {offs[i]}..{offs[i + 1]})'
    try:
      with Image.open(io.BytesIO(chunk[a:b].tobytes())) as im:
        if im.size != shape[1::-1]:
          fail(where, f'is {im.width}x{im.height}, expected '
               f'{shape[1]}x{shape[0]}', _JPEG_FIX)
        out[i] = np.asarray(im.convert('RGB'))
    except DataFormatError:
      raise
    except Image.UnidentifiedImageError:
      fail(where, 'is not a decodable JPEG (no known image format)',
           _JPEG_FIX)
    except Exception as e:  # PIL raises many types on damaged bytes
      fail(where, f'is not a decodable JPEG ({type(e).__name__}: '
           f'{_one_line(e)})', _JPEG_FIX)
  return out


def _decode_all(d, path: str, shape) -> dict[str, np.ndarray]:
  """Both splits, in worker processes when there are many images."""
  n = sum(len(d[f'{s}_offsets']) - 1 for s in ('train', 'test'))
  workers = min(4, os.cpu_count() or 1) if n >= _POOL_MIN_IMAGES else 1
  jobs = {}
  for split in ('train', 'test'):
    blob, offs = d[f'{split}_jpeg'], d[f'{split}_offsets']
    cuts = np.unique(np.linspace(0, len(offs) - 1, 2 * workers + 1).astype(int))
    # Each job gets only its own bytes, not the whole 50 MB blob.
    jobs[split] = [(blob[offs[a]:offs[b]], offs[a:b + 1], int(a), split, path,
                    shape) for a, b in zip(cuts[:-1], cuts[1:])]
  if workers == 1:
    return {s: np.concatenate([_decode_jpegs(*j) for j in js])
            for s, js in jobs.items()}
  # 'spawn': forking a process that already runs JAX's threads can deadlock.
  with concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context('spawn')) as ex:
    futures = {s: [ex.submit(_decode_jpegs, *j) for j in js]
               for s, js in jobs.items()}
    try:
      return {s: np.concatenate([f.result() for f in fs])
              for s, fs in futures.items()}
    except BaseException:
      ex.shutdown(cancel_futures=True)  # one bad image: skip the rest
      raise


def _cache_path(path: str, cache_dir: str) -> str:
  st = os.stat(path)
  key = hashlib.sha1(f'{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}'
                     .encode()).hexdigest()[:12]
  return os.path.join(cache_dir, f'cifar10_decoded_{key}.npz')


def _read_cache(cache: str, lengths: dict[str, int], shape):
  """(arrays, None) from a complete cache, else (None, why it is unusable)."""
  try:
    with np.load(cache, allow_pickle=False) as f:
      x = {s: f[f'x_{s}'] for s in lengths}
  except Exception as e:  # truncated zip, bad CRC, missing key: all "rebuild"
    return None, f'{type(e).__name__}: {_one_line(e)}'
  for s, n in lengths.items():
    if x[s].dtype != np.uint8 or x[s].shape != (n, *shape):
      return None, (f'x_{s} is {x[s].dtype} {list(x[s].shape)}, expected '
                    f'uint8 {[n, *shape]}')
  return x, None


def _write_cache(cache: str, arrays: dict[str, np.ndarray]) -> str | None:
  """Writes atomically (temp file, fsync, os.replace): a crash mid-write
  leaves no half cache under the real name. Returns why it failed, or None."""
  folder = os.path.dirname(cache)
  try:
    os.makedirs(folder, exist_ok=True)
    for old in glob.glob(glob.escape(cache) + '.*.tmp'):  # from killed runs
      if time.time() - os.path.getmtime(old) > 3600:
        os.unlink(old)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(cache) + '.',
                               suffix='.tmp')
    try:
      os.fchmod(fd, 0o644)
      with os.fdopen(fd, 'wb') as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, cache)
    except BaseException:
      os.unlink(tmp)
      raise
  except OSError as e:
    return _one_line(e)
  return None


def _cifar_jpeg(info: DatasetInfo, path: str, cache_dir: str, log) -> Splits:
  """Decodes ../shared/data/cifar10_jpeg_bytes.npz once, caching the arrays."""
  d = _load_npz(path, _JPEG_KEYS)
  y = {s: _jpeg_index(info, d, path, s, log) for s in ('train', 'test')}
  cache = _cache_path(path, cache_dir)
  src = f'cifar10 from JPEG bytes {path}'
  if os.path.exists(cache):
    x, why = _read_cache(cache, {s: len(v) for s, v in y.items()},
                         info.image_shape)
    if x is not None:
      return Splits(x['train'], y['train'], x['test'], y['test'],
                    f'{src} (decoded once, read from cache {cache})')
    log(f'cache {cache} is incomplete or corrupt ({why}); rebuilding it')
  log(f'decoding {path} into {cache} (once, ~40 s per core)')
  x = _decode_all(d, path, info.image_shape)
  err = _write_cache(cache, {'x_train': x['train'], 'x_test': x['test']})
  if err:
    log(f'could not write cache {cache} ({err}); continuing without it')
  note = (f'decoded once, cached at {cache}' if err is None else
          f'decoded now, not cached: {err}')
  return Splits(x['train'], y['train'], x['test'], y['test'], f'{src} ({note})')


def load_local(info: DatasetInfo, data_dir: str, cache_dir: str,
               log: Callable[[str], None]) -> Splits | None:
  """Returns the splits from files in `data_dir`, or None if none are there."""
  data_dir = os.path.abspath(data_dir)
  npz = os.path.join(data_dir, f'{info.name}.npz')
  if os.path.exists(npz):
    return _local_npz(info, npz, log)
  jpeg = os.path.join(data_dir, 'cifar10_jpeg_bytes.npz')
  if info.name == 'cifar10' and os.path.exists(jpeg):
    return _cifar_jpeg(info, jpeg, os.path.abspath(cache_dir), log)
  return load_archive(info, data_dir, log)


# ------------------------------------------------------------------- embedded
def load_digits(log: Callable[[str], None] = logging.info) -> Splits:
  from sklearn.datasets import load_digits as sk_digits
  d = sk_digits()
  # Pixel values are 0..16; scale to the 0..255 range every pipeline expects.
  x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  y = d.target
  info = get_info('digits')
  n = info.num_train
  where = 'scikit-learn digits'
  return _finish(info, (x[:n], y[:n], where, where),
                 (x[n:], y[n:], where, where),
                 'digits from scikit-learn (embedded, 8x8)', log)


# ----------------------------------------------------------------------- TFDS
PROBE_TIMEOUT_S = 4.0


def _probe(root: str) -> str | None:
  """None if `root` answers HTTP at all (any status), else why not."""
  try:
    urllib.request.urlopen(urllib.request.Request(root, method='HEAD'),
                           timeout=PROBE_TIMEOUT_S).close()
  except urllib.error.HTTPError:
    return None  # it answered: the host is reachable
  except (OSError, ValueError) as e:  # URLError, timeout, refused, bad URL
    return f'{root} ({_one_line(getattr(e, "reason", e))})'
  return None


def download_unreachable(urls) -> str | None:
  """Why the hosts of `urls` cannot be reached now, or None if they answer.

  TFDS's downloader (tensorflow_datasets/core/download/downloader.py) retries
  every URL MAX_RETRIES=10 times with exponential backoff and sets no
  timeout, so offline it takes minutes to fail. One HEAD per host in daemon
  threads, bounded as a whole (DNS lookups ignore socket timeouts), answers
  in seconds. urllib honours the *_proxy environment variables like TFDS.
  """
  roots = sorted({'{0}://{1}/'.format(*urllib.parse.urlsplit(u)[:2])
                  for u in urls})
  results: dict[str, str | None] = {}
  threads = [threading.Thread(target=lambda r=r: results.update({r: _probe(r)}),
                              daemon=True) for r in roots]
  for t in threads:
    t.start()
  deadline = time.monotonic() + PROBE_TIMEOUT_S + 1
  for t in threads:
    t.join(max(0.0, deadline - time.monotonic()))
  for r in roots:
    if r not in results:
      return f'{r} (no answer within {PROBE_TIMEOUT_S:g} s)'
    if results[r]:
      return results[r]
  return None


def _download_urls(info: DatasetInfo) -> list[str]:
  """The URLs TFDS would fetch, from the builder's checksums file: no TF
  import and no network needed."""
  import tensorflow_datasets as tfds  # heavy; only when TFDS is reached
  try:
    return list(tfds.builder_cls(info.tfds_name).url_infos or ())
  except Exception:  # unknown to this TFDS version: let tfds.load report it
    return []


def tfds_dir(tfds_data_dir: str | None) -> str:
  return tfds_data_dir or os.environ.get('TFDS_DATA_DIR') or os.path.join(
      os.path.expanduser('~'), 'tensorflow_datasets')


def load_tfds(info: DatasetInfo, tfds_data_dir: str | None, download: bool,
              log: Callable[[str], None] = logging.info) -> Splits:
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
  where = f'TFDS {info.tfds_name}'
  how = 'TFDS download, prepared in' if download else 'TFDS prepared copy in'
  return _finish(info, (xtr, ytr, f'{where} train images', f'{where} labels'),
                 (xte, yte, f'{where} test images', f'{where} labels'),
                 f'{info.name} from {how} {tfds_dir(tfds_data_dir)}', log)


def _try_tfds(info: DatasetInfo, tfds_data_dir, download: bool, log,
              tried: list[str]) -> Splits | None:
  where = tfds_dir(tfds_data_dir)
  what = f'TFDS download into {where}' if download else (
      f'TFDS prepared copy in {where}')
  if download:
    why = download_unreachable(_download_urls(info))
    if why:
      tried.append(f'{what}: cannot reach {why}; this machine looks offline')
      return None
  try:
    return load_tfds(info, tfds_data_dir, download, log)
  except DataFormatError:
    raise  # TFDS had the data, but it does not fit the registry
  except Exception as e:  # TFDS raises many types; all mean "not here"
    first = str(e).strip().splitlines()[0].split('. ')[0][:200] if str(
        e).strip() else ''
    tried.append(f'{what}: {type(e).__name__}: {first}')
  return None


def load(name: str, *, data_dir: str | None = None, cache_dir: str | None = None,
         tfds_data_dir: str | None = None, allow_download: bool = True,
         log: Callable[[str], None] = logging.info) -> Splits:
  """Tries each source in order; raises one DataNotFoundError listing them."""
  info = get_info(name)
  if name == 'digits':
    return load_digits(log)
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
    splits = _try_tfds(info, tfds_data_dir, download, log, tried)
    if splits is not None:
      return splits
  if not allow_download:
    tried.append('TFDS download: skipped (dataset.allow_download=False)')
  raise DataNotFoundError(
      f'could not load dataset {name!r}. Tried, in order: '
      + '; '.join(f'({i + 1}) {t}' for i, t in enumerate(tried))
      + f'. Fix: put {name}.npz (x_train, y_train, x_test, y_test) in a '
      f'directory and pass --config.data_dir=DIR or set {ENV_DATA_DIR}=DIR, '
      'put a prepared TFDS copy in --config.tfds_data_dir, or run where TFDS '
      'can download it.')
