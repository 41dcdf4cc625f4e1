"""Local dataset files read whole into uint8 arrays: a `<name>.npz`, the
CIFAR-10 python/binary archives or folders, and MNIST IDX files.

Split out of sources.py (which keeps the CIFAR-10 JPEG-bytes decoder, TFDS
and the search order in `sources.load`); every reader validates what it read
through data/validate.py, naming the file and field that is wrong.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import math
import os
import pickle  # only the official CIFAR-10 python archive, restricted below
import tarfile
import zlib

import numpy as np

from jaxcnn.data import validate
from jaxcnn.data.datasets import DatasetInfo
from jaxcnn.errors import DataFormatError

fail = validate.fail


@dataclasses.dataclass
class Splits:
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  source: str  # human-readable description, logged at start


def _one_line(e) -> str:
  return ' '.join(str(e).split())[:300]


def _finish(info: DatasetInfo, train, test, source: str, log) -> Splits:
  """train/test: (x, y, x_where, y_where) as read; validated here."""
  xtr, ytr = validate.split(info, 'train', *train, log)
  xte, yte = validate.split(info, 'test', *test, log)
  return Splits(xtr, ytr, xte, yte, source=source)


# ---------------------------------------------------------------- local files
def _load_npz(path: str, keys=None) -> dict[str, np.ndarray]:
  """Reads `keys` (default: all) of an .npz, naming the field that fails."""
  try:
    f = np.load(path, allow_pickle=False)
  except Exception as e:  # zipfile/ValueError/OSError: all mean "unreadable"
    fail(path, f'cannot be read as .npz ({type(e).__name__}: {_one_line(e)})',
         'the file is damaged or not an .npz; re-create it with np.savez')
  if not isinstance(f, np.lib.npyio.NpzFile):
    fail(path, 'holds a single .npy array, not an .npz archive of named '
         'arrays', 'save it with np.savez(path, name=array, ...)')
  with f:
    missing = sorted(set(keys or ()) - set(f.files))
    if missing:
      fail(path, f'lacks keys {missing} (it has {sorted(f.files)})',
           'save every required array under its name')
    out = {}
    for k in keys or f.files:
      try:
        out[k] = f[k]
      except Exception as e:  # object arrays (no pickle), zlib/zip damage
        if 'allow_pickle' in str(e):
          fail(f'{path}: {k}', 'is an object array (pickled Python objects)',
               'save numeric arrays: images as uint8, labels as integers')
        fail(f'{path}: {k}', f'cannot be read ({type(e).__name__}: '
             f'{_one_line(e)})', 'the file is damaged; re-create it')
  return out


def _local_npz(info: DatasetInfo, path: str, log) -> Splits:
  d = _load_npz(path, ('x_train', 'y_train', 'x_test', 'y_test'))
  return _finish(info,
                 (d['x_train'], d['y_train'], f'{path}: x_train',
                  f'{path}: y_train'),
                 (d['x_test'], d['y_test'], f'{path}: x_test',
                  f'{path}: y_test'),
                 f'{info.name} from local npz {path}', log)


# ------------------------------------------------- CIFAR-10 archives, folders
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


_CIFAR_FIX = 'replace it with the file from the official CIFAR-10 archive'


def _cifar_python_batch(raw: bytes, where: str):
  # The official python archive is pickled dicts; the restricted unpickler
  # keeps a tampered file from executing code.
  try:
    d = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding='bytes').load()
  except DataFormatError as e:  # the unpickler refused a global
    fail(f'{where}:', str(e), _CIFAR_FIX)
  except Exception as e:  # pickle raises many types on damaged input
    fail(where, f'is not a CIFAR-10 python batch ({type(e).__name__}: '
         f'{_one_line(e)})', _CIFAR_FIX)
  if not isinstance(d, dict):
    fail(where, f'holds a {type(d).__name__}, not the batch dict', _CIFAR_FIX)
  data, labels = (d.get(k.encode(), d.get(k)) for k in ('data', 'labels'))
  if data is None or labels is None:
    fail(where, f'lacks "data" or "labels" (keys: {sorted(map(str, d))})',
         _CIFAR_FIX)
  try:
    data, labels = np.asarray(data), np.asarray(labels)
  except ValueError as e:  # ragged lists
    fail(where, f'has ragged data or labels ({_one_line(e)})', _CIFAR_FIX)
  if data.ndim != 2 or data.shape[1] != 3072:
    fail(f'{where}: data', f'has shape {list(data.shape)}, expected '
         '[N, 3072] (one 32x32 RGB image per row, channels first)', _CIFAR_FIX)
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_binary_batch(raw: bytes, where: str):
  """Fixed-length records: 1 label byte + 3072 CHW pixel bytes (R, G, B)."""
  rec = np.frombuffer(raw, np.uint8)
  if rec.size % 3073:
    fail(where, f'has {rec.size} bytes, not a multiple of the 3073-byte '
         'CIFAR-10 record (1 label + 3072 pixels): truncated?', _CIFAR_FIX)
  rec = rec.reshape(-1, 3073)
  return rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), rec[:, 0]


def _read_bytes(path: str) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def _read_members(path: str, names: list[str]) -> dict[str, bytes | None]:
  """The named files of a folder or (by basename) of a tar archive."""
  out = {}
  try:
    if os.path.isdir(path):
      for n in names:
        p = os.path.join(path, n)
        out[n] = _read_bytes(p) if os.path.exists(p) else None
      return out
    with tarfile.open(path) as tar:
      members = {os.path.basename(m.name): m for m in tar.getmembers()
                 if m.isfile()}
      for n in names:
        out[n] = tar.extractfile(members[n]).read() if n in members else None
  except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
    fail(path, f'cannot be read ({type(e).__name__}: {_one_line(e)})',
         'the archive or folder is damaged; download it again')
  return out


_CIFAR_LAYOUTS = (  # name, description, parse, extension, (x, y) field names
    ('cifar-10-batches-py', 'python batches folder', _cifar_python_batch, '',
     ('data', 'labels')),
    ('cifar-10-python.tar.gz', 'python archive', _cifar_python_batch, '',
     ('data', 'labels')),
    ('cifar-10-batches-bin', 'binary batches folder', _cifar_binary_batch,
     '.bin', ('pixel bytes', 'label bytes')),
    ('cifar-10-binary.tar.gz', 'binary archive', _cifar_binary_batch, '.bin',
     ('pixel bytes', 'label bytes')),
)


def _cifar_batches(info: DatasetInfo, path: str, parse, ext: str, fields,
                   log) -> list[np.ndarray]:
  """[x_train, y_train, x_test, y_test], each batch validated on its own so
  an error names the batch file."""
  files = {'train': [f'data_batch_{i}{ext}' for i in range(1, 6)],
           'test': [f'test_batch{ext}']}
  raw = _read_members(path, files['train'] + files['test'])
  missing = [n for n, r in raw.items() if r is None]
  if missing:
    fail(path, f'lacks {missing}', 'it must hold all 6 CIFAR-10 batches '
         f'(data_batch_1{ext} .. data_batch_5{ext}, test_batch{ext})')
  out = []
  for split, names in files.items():
    parts = []
    for n in names:
      where = f'{path}/{n}'
      x, y = parse(raw.pop(n), where)
      parts.append(validate.split(info, split, x, y, f'{where}: {fields[0]}',
                                  f'{where}: {fields[1]}', log))
    out += [np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts])]
  return out


# ------------------------------------------------------------- MNIST IDX files
_IDX_DTYPES = {0x08: '>u1', 0x09: '>i1', 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4',
               0x0E: '>f8'}
_IDX_FIX = 'the file is truncated or damaged; download it again'


def _read_idx(path: str) -> np.ndarray:
  """Any IDX type (the dtype is validated later, with the other formats')."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError, zlib.error) as e:
    fail(path, f'cannot be read ({type(e).__name__}: {_one_line(e)})', _IDX_FIX)
  if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_DTYPES:
    fail(path, f'is not an IDX file (magic bytes {raw[:4].hex() or "none"})',
         'use the original MNIST IDX files (magic 0x0000080N)')
  ndim, head = raw[3], 4 + 4 * raw[3]
  if ndim == 0 or len(raw) < head:
    fail(path, f'has a truncated IDX header ({len(raw)} bytes)', _IDX_FIX)
  dims = tuple(int(n) for n in np.frombuffer(raw[4:head], '>u4'))
  dtype = np.dtype(_IDX_DTYPES[raw[2]])
  want = math.prod(dims) * dtype.itemsize
  if len(raw) - head != want:
    fail(path, f'holds {len(raw) - head} data bytes but its header says '
         f'{list(dims)} {dtype.name} = {want} bytes', _IDX_FIX)
  return np.frombuffer(raw, dtype, math.prod(dims), head).reshape(dims)


_IDX_STEMS = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
              't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


def _find_idx(folder: str, stem: str) -> str | None:
  for name in (stem, stem + '.gz', stem.replace('-idx', '.idx')):
    p = os.path.join(folder, name)
    if os.path.exists(p):
      return p
  return None


def _local_idx(info: DatasetInfo, data_dir: str, log) -> Splits | None:
  for folder in (os.path.join(data_dir, info.name), data_dir):
    paths = [_find_idx(folder, s) for s in _IDX_STEMS]
    if not any(paths):
      continue
    if not all(paths):
      fail(folder, 'has only some of the MNIST IDX files (missing '
           f'{[s for s, p in zip(_IDX_STEMS, paths) if not p]})',
           'add the missing files (optionally .gz) or remove the others')
    xtr, ytr, xte, yte = map(_read_idx, paths)
    return _finish(info, (xtr, ytr, paths[0], paths[1]),
                   (xte, yte, paths[2], paths[3]),
                   f'{info.name} from local IDX files in {folder}', log)
  return None


def load_archive(info: DatasetInfo, data_dir: str, log) -> Splits | None:
  """`<name>.npz`, a CIFAR-10 archive/folder or MNIST IDX files in the
  absolute `data_dir`, or None if none is there (the JPEG-bytes CIFAR-10
  file is sources.py's, checked between the npz and the archives)."""
  if info.name == 'cifar10':
    for name, what, parse, ext, fields in _CIFAR_LAYOUTS:
      p = os.path.join(data_dir, name)
      if os.path.exists(p):
        xtr, ytr, xte, yte = _cifar_batches(info, p, parse, ext, fields, log)
        return Splits(xtr, ytr, xte, yte,
                      f'cifar10 from local CIFAR-10 {what} {p}')
  if info.name in ('mnist', 'fashion_mnist'):
    return _local_idx(info, data_dir, log)
  return None
