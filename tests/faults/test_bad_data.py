"""Data files that are valid arrays but wrong for the task, in every local
format sources.py accepts; the CIFAR JPEG cache; TFDS on an offline machine.

Each wrong file must raise DataFormatError in one line naming the file, the
field, what is wrong and the fix, before any training. Inputs are tiny and
built here; nothing touches the network except the offline check, which
only runs where the download host cannot be reached.
"""
import gzip
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
import time

import numpy as np
import pytest
from PIL import Image

from jaxcnn.data import sources
from jaxcnn.data.datasets import get_info
from jaxcnn.errors import DataFormatError, DataNotFoundError


def _load(tmp_path, name='mnist', **kw):
  return sources.load(name, data_dir=str(tmp_path), allow_download=False, **kw)


def _refused(tmp_path, where, match, name='mnist', **kw):
  """Asserts a one-line DataFormatError that starts at `where` (file and
  field), matches `match` and gives a fix."""
  with pytest.raises(DataFormatError) as e:
    _load(tmp_path, name, **kw)
  msg = str(e.value)
  assert '\n' not in msg and 'Traceback' not in msg
  assert msg.startswith(str(where)), msg
  assert 'Fix: ' in msg, msg
  assert e.match(match)
  return msg


# ---------------------------------------------------------------------- npz
def _mnist_arrays(n_train=6, n_test=4):
  rng = np.random.default_rng(0)
  return dict(x_train=rng.integers(0, 256, (n_train, 28, 28), np.uint8),
              y_train=np.arange(n_train) % 10,
              x_test=rng.integers(0, 256, (n_test, 28, 28), np.uint8),
              y_test=np.arange(n_test) % 10)


_NPZ_CASES = {
    'float_images': ('x_train', lambda a: a.astype(np.float32) / 255,
                     'float32 values in .*not uint8'),
    'bool_images': ('x_test', lambda a: a > 128, 'booleans'),
    'object_images': ('x_train', lambda a: a.astype(object), 'object array'),
    'int_images_out_of_range': ('x_train', lambda a: a.astype(np.int16) + 100,
                                r'outside the 0\.\.255'),
    'negative_int_images': ('x_test', lambda a: a.astype(np.int32) - 1,
                            r'\[-1, '),
    'wrong_image_shape': ('x_train', lambda a: np.zeros((6, 32, 32, 1),
                                                        np.uint8),
                          r'shape \[6, 32, 32, 1\].*\[N, 28, 28, 1\]'),
    'channels_first': ('x_train', lambda a: a[:, None], 'channels-first'),
    'flat_images': ('x_test', lambda a: a.reshape(len(a), -1),
                    r'shape \[4, 784\]'),
    'fractional_labels': ('y_train', lambda y: y + 0.5,
                          'not whole numbers.*index 0 is 0.5'),
    'nan_labels': ('y_test', lambda y: np.where(y == 2, np.nan, y),
                   'not whole numbers.*index 2 is nan'),
    'bool_labels': ('y_train', lambda y: y > 3, 'booleans'),
    'string_labels': ('y_train', lambda y: y.astype(str), 'strings'),
    'object_labels': ('y_test', lambda y: y.astype(object), 'object array'),
    'negative_labels': ('y_train', lambda y: y - 1,
                        r'labels in \[-1, 4\] \(index 0 is -1\).*10 classes'),
    'labels_too_large': ('y_test', lambda y: y + 8,
                         r'index 2 is 10\), but mnist has 10 classes'),
    'one_hot_labels': ('y_train', lambda y: np.eye(10)[y].astype(np.uint8),
                       'one-hot'),
    'short_labels': ('y_train', lambda y: y[:5], None),
    'empty_split': ('x_test', lambda a: a[:0], None),
}


@pytest.mark.parametrize('case', sorted(_NPZ_CASES))
def test_npz_field_wrong_for_the_task(tmp_path, case):
  key, change, match = _NPZ_CASES[case]
  arrays = _mnist_arrays()
  if case == 'empty_split':
    arrays['y_test'] = arrays['y_test'][:0]
    match = 'x_test holds no images'
  if case == 'short_labels':
    match = 'x_train has 6 images but .*y_train has 5 labels'
    key = 'x_train'
    arrays['y_train'] = arrays['y_train'][:5]
  else:
    arrays[key] = change(arrays[key])
  path = tmp_path / 'mnist.npz'
  np.savez(path, **arrays)
  _refused(tmp_path, f'{path}: {key} ', match)


def test_npz_rgb_dataset_given_gray_or_3d_images(tmp_path):
  rng = np.random.default_rng(3)
  arrays = dict(x_train=rng.integers(0, 256, (4, 32, 32), np.uint8),
                y_train=np.arange(4), y_test=np.arange(2),
                x_test=rng.integers(0, 256, (2, 32, 32, 3), np.uint8))
  path = tmp_path / 'cifar10.npz'
  np.savez(path, **arrays)
  _refused(tmp_path, f'{path}: x_train ', r'shape \[4, 32, 32\].*'
           r'\[N, 32, 32, 3\].*RGB', name='cifar10')
  arrays['x_train'] = arrays['x_train'][..., None]
  np.savez(path, **arrays)
  _refused(tmp_path, f'{path}: x_train ', r'shape \[4, 32, 32, 1\]',
           name='cifar10')


def test_npz_whole_number_conversions_are_logged(tmp_path):
  arrays = _mnist_arrays()
  arrays['y_train'] = arrays['y_train'].astype(np.float64)
  arrays['x_test'] = arrays['x_test'].astype(np.int64)
  np.savez(tmp_path / 'mnist.npz', **arrays)
  logs = []
  s = _load(tmp_path, log=logs.append)
  assert s.y_train.dtype == np.int32 and s.x_test.dtype == np.uint8
  assert s.y_train.tolist() == list(range(6))
  assert any('y_train: converted float64 labels to int32' in m for m in logs)
  assert any('x_test: converted int64 images to uint8' in m for m in logs)


def test_npz_missing_key_and_single_array_file(tmp_path):
  arrays = _mnist_arrays()
  del arrays['y_test']
  np.savez(tmp_path / 'mnist.npz', **arrays)
  _refused(tmp_path, tmp_path / 'mnist.npz', r"lacks keys \['y_test'\]")
  with open(tmp_path / 'mnist.npz', 'wb') as f:
    np.save(f, np.zeros(3))
  _refused(tmp_path, tmp_path / 'mnist.npz', 'single .npy array')


# ----------------------------------------------------------------- MNIST IDX
_IDX_CODES = {np.dtype('u1'): 8, np.dtype('i1'): 9, np.dtype('>i2'): 11,
              np.dtype('>i4'): 12, np.dtype('>f4'): 13, np.dtype('>f8'): 14}


def _idx_bytes(arr):
  header = bytes([0, 0, _IDX_CODES[arr.dtype], arr.ndim]) + b''.join(
      int(d).to_bytes(4, 'big') for d in arr.shape)
  return header + arr.tobytes()


def _write_idx(folder, gz, **override):
  rng = np.random.default_rng(1)
  arrays = {'train-images-idx3-ubyte': rng.integers(0, 256, (5, 28, 28), 'u1'),
            'train-labels-idx1-ubyte': np.arange(5, dtype='u1'),
            't10k-images-idx3-ubyte': rng.integers(0, 256, (3, 28, 28), 'u1'),
            't10k-labels-idx1-ubyte': np.arange(3, dtype='u1')}
  paths = {}
  for stem, arr in arrays.items():
    raw = override.get(stem)
    raw = _idx_bytes(arr) if raw is None else raw
    raw = raw(arr) if callable(raw) else raw
    paths[stem] = folder / (stem + ('.gz' if gz else ''))
    if gz:
      with gzip.open(paths[stem], 'wb') as f:
        f.write(raw)
    else:
      paths[stem].write_bytes(raw)
  return paths


_IDX_CASES = {
    'float_images': ('train-images-idx3-ubyte',
                     lambda a: _idx_bytes((a / 255).astype('>f4')),
                     'float32 values'),
    'int16_labels_out_of_range': ('t10k-labels-idx1-ubyte',
                                  lambda a: _idx_bytes((a + 9).astype('>i2')),
                                  r'labels in \[9, 11\]'),
    'negative_int8_labels': ('train-labels-idx1-ubyte',
                             lambda a: _idx_bytes(a.astype('i1') - 1),
                             r'index 0 is -1'),
    'float_labels_fractional': ('train-labels-idx1-ubyte',
                                lambda a: _idx_bytes((a / 2).astype('>f8')),
                                'not whole numbers'),
    'wrong_image_shape': ('t10k-images-idx3-ubyte',
                          lambda a: _idx_bytes(np.zeros((3, 32, 32), 'u1')),
                          r'shape \[3, 32, 32\], but mnist images are'),
    'too_few_labels': ('train-labels-idx1-ubyte',
                       lambda a: _idx_bytes(a[:4]), 'has 5 images but'),
    'truncated': ('t10k-images-idx3-ubyte', lambda a: _idx_bytes(a)[:-10],
                  'header says'),
    'not_idx': ('t10k-labels-idx1-ubyte', lambda a: b'hello world',
                'not an IDX file'),
}


@pytest.mark.parametrize('gz', [True, False], ids=['gz', 'raw'])
@pytest.mark.parametrize('case', sorted(_IDX_CASES))
def test_idx_file_wrong_for_the_task(tmp_path, case, gz):
  stem, raw, match = _IDX_CASES[case]
  paths = _write_idx(tmp_path, gz, **{stem: raw})
  where = paths['train-images-idx3-ubyte'] if case == 'too_few_labels' else (
      paths[stem])
  _refused(tmp_path, where, match)


def test_idx_damaged_gzip_and_partial_set(tmp_path):
  paths = _write_idx(tmp_path, True)
  victim = paths['train-labels-idx1-ubyte']
  victim.write_bytes(victim.read_bytes()[:15])
  _refused(tmp_path, victim, 'cannot be read')
  os.unlink(victim)
  _refused(tmp_path, tmp_path, 'only some of the MNIST IDX files.*'
           'train-labels-idx1-ubyte')


# ------------------------------------------------------- CIFAR-10 batches
def _py_batches(folder, **override):
  """cifar-10-batches-py with 2 images per batch; override[name] = dict."""
  folder.mkdir()
  rng = np.random.default_rng(2)
  for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
    d = {b'data': rng.integers(0, 256, (2, 3072), np.uint8),
         b'labels': [1, 2]}
    for k, v in override.get(name, {}).items():
      d[k] = v
      if v is None:
        del d[k]
    (folder / name).write_bytes(pickle.dumps(d))


_PY_CASES = {
    'float_data': ('data_batch_3',
                   {b'data': np.full((2, 3072), 0.5, np.float32)},
                   'data holds float32'),
    'label_10': ('test_batch', {b'labels': [3, 10]},
                 r'labels holds labels in \[3, 10\] \(index 1 is 10\)'),
    'fractional_labels': ('data_batch_1', {b'labels': [0.5, 1.0]},
                          'not whole numbers'),
    'string_labels': ('data_batch_2', {b'labels': ['cat', 'dog']}, 'strings'),
    'short_rows': ('data_batch_4', {b'data': np.zeros((2, 1024), np.uint8)},
                   r'data has shape \[2, 1024\], expected \[N, 3072\]'),
    'too_many_labels': ('data_batch_5', {b'labels': [1, 2, 3]},
                        'has 2 images but .* 3 labels'),
    'empty_batch': ('test_batch', {b'data': np.zeros((0, 3072), np.uint8),
                                   b'labels': []}, 'holds no images'),
    'missing_key': ('data_batch_2', {b'data': None}, 'lacks "data"'),
}


@pytest.mark.parametrize('case', sorted(_PY_CASES))
def test_cifar_python_batch_wrong_for_the_task(tmp_path, case):
  name, change, match = _PY_CASES[case]
  folder = tmp_path / 'cifar-10-batches-py'
  _py_batches(folder, **{name: change})
  _refused(tmp_path, folder / name, match, name='cifar10')


def test_cifar_python_batch_damaged_pickle(tmp_path):
  folder = tmp_path / 'cifar-10-batches-py'
  _py_batches(folder)
  victim = folder / 'data_batch_2'
  victim.write_bytes(victim.read_bytes()[:100])
  _refused(tmp_path, victim, 'is not a CIFAR-10 python batch', name='cifar10')


def _bin_batches(root, labels=None, sizes=None, tar=False):
  records = {}
  for name in [f'data_batch_{i}.bin' for i in range(1, 6)] + ['test_batch.bin']:
    lab = np.asarray((labels or {}).get(name, [1, 2]), np.uint8)
    px = np.zeros((len(lab), 3072), np.uint8)
    raw = np.concatenate([lab[:, None], px], 1).tobytes()
    records[name] = raw[:(sizes or {}).get(name, len(raw))]
  if not tar:
    folder = root / 'cifar-10-batches-bin'
    folder.mkdir()
    for n, raw in records.items():
      (folder / n).write_bytes(raw)
    return folder
  path = root / 'cifar-10-binary.tar.gz'
  with tarfile.open(path, 'w:gz') as t:
    for n, raw in records.items():
      info = tarfile.TarInfo(f'cifar-10-batches-bin/{n}')
      info.size = len(raw)
      t.addfile(info, io.BytesIO(raw))
  return path


@pytest.mark.parametrize('tar', [False, True], ids=['folder', 'tar'])
def test_cifar_binary_batch_wrong_for_the_task(tmp_path, tar):
  where = _bin_batches(tmp_path, labels={'data_batch_2.bin': [1, 200]},
                       tar=tar)
  _refused(tmp_path, f'{where}/data_batch_2.bin: label bytes',
           r'holds labels in \[1, 200\] \(index 1 is 200\)', name='cifar10')


def test_cifar_binary_truncated_and_empty_batches(tmp_path):
  folder = _bin_batches(tmp_path, sizes={'test_batch.bin': 3073 + 100})
  _refused(tmp_path, folder / 'test_batch.bin', 'not a multiple of the '
           '3073-byte', name='cifar10')
  (folder / 'test_batch.bin').write_bytes(b'')
  _refused(tmp_path, folder / 'test_batch.bin', 'holds no images',
           name='cifar10')


# --------------------------------------------- CIFAR-10 JPEG-bytes npz, cache
def _jpeg(color, size=32, quality=90):
  buf = io.BytesIO()
  Image.new('RGB', (size, size), color).save(buf, 'JPEG', quality=quality)
  return np.frombuffer(buf.getvalue(), np.uint8)


def _jpeg_npz(folder, train=None, test=None, **override):
  parts = {'train': train or [_jpeg('red'), _jpeg('blue'), _jpeg('green')],
           'test': test or [_jpeg('white'), _jpeg('black')]}
  d = {}
  for split, jpegs in parts.items():
    d[f'{split}_jpeg'] = np.concatenate(jpegs)
    d[f'{split}_offsets'] = np.cumsum([0] + [len(j) for j in jpegs])
    d[f'y_{split}'] = (np.arange(len(jpegs)) % 10).astype(np.uint8)
  d.update(override)
  path = folder / 'cifar10_jpeg_bytes.npz'
  np.savez(path, **{k: v for k, v in d.items() if v is not None})
  return path


_JPEG_CASES = {
    'garbage_bytes': (dict(train=[_jpeg('red'), np.frombuffer(
        b'not a jpeg at all', np.uint8), _jpeg('green')]),
        ': train image 1 ', 'not a decodable JPEG'),
    'truncated_jpeg': (dict(test=[_jpeg('white'), _jpeg('black')[:40]]),
                       ': test image 1 ', 'not a decodable JPEG'),
    'wrong_size': (dict(train=[_jpeg('red'), _jpeg('red'), _jpeg('red', 16)]),
                   ': train image 2 ', 'is 16x16, expected 32x32'),
    'fractional_labels': (dict(y_train=np.array([0, 1.5, 2])), ': y_train ',
                          'not whole numbers'),
    'label_out_of_range': (dict(y_test=np.array([3, 12])), ': y_test ',
                           '10 classes'),
    'offsets_too_short': (dict(train_offsets=np.array([0, 10])),
                          ': train_offsets ', 'has 2 entries but'),
    'float_bytes': (dict(test_jpeg=np.zeros(100, np.float32)), ': test_jpeg ',
                    'not 1-D uint8'),
    'empty_split': (dict(y_test=np.zeros(0, np.uint8),
                         test_offsets=np.array([0])), ': y_test ',
                    'holds no labels'),
    'missing_key': (dict(train_offsets=None), '', r"lacks keys \['train_"),
}


@pytest.mark.parametrize('case', sorted(_JPEG_CASES))
def test_cifar_jpeg_bytes_wrong_for_the_task(tmp_path, case):
  kw, where, match = _JPEG_CASES[case]
  path = _jpeg_npz(tmp_path, **kw)
  msg = _refused(tmp_path, f'{path}{where}', match, name='cifar10',
                 cache_dir=str(tmp_path / 'cache'))
  if 'image' in where or 'jpeg' in where or 'offsets' in where:
    assert 'shared/data/README.md' in msg
  assert not (tmp_path / 'cache').exists() or not os.listdir(
      tmp_path / 'cache')  # nothing cached from a bad file


def test_cifar_jpeg_bad_image_is_named_from_a_worker_process(tmp_path,
                                                             monkeypatch):
  """Many images decode in spawned workers; the error crosses back intact."""
  train = [_jpeg('red')] * 12
  train[9] = np.frombuffer(b'garbage', np.uint8)
  path = _jpeg_npz(tmp_path, train=train)
  monkeypatch.setattr(sources, '_POOL_MIN_IMAGES', 1)
  monkeypatch.setattr(sources.os, 'cpu_count', lambda: 2)
  _refused(tmp_path, f'{path}: train image 9 ', 'not a decodable JPEG',
           name='cifar10', cache_dir=str(tmp_path / 'cache'))


def test_cifar_jpeg_source_names_file_and_cache_separately(tmp_path):
  path = _jpeg_npz(tmp_path)
  cache_dir = tmp_path / 'cache'
  s = _load(tmp_path, 'cifar10', cache_dir=str(cache_dir))
  [cache] = os.listdir(cache_dir)
  cache = cache_dir / cache
  assert s.source == (f'cifar10 from JPEG bytes {path} (decoded once, cached '
                      f'at {cache})')
  assert s.x_train.shape == (3, 32, 32, 3) and s.x_train[0, 0, 0, 0] > 240
  again = _load(tmp_path, 'cifar10', cache_dir=str(cache_dir))
  assert again.source == (f'cifar10 from JPEG bytes {path} (decoded once, '
                          f'read from cache {cache})')
  np.testing.assert_array_equal(again.x_test, s.x_test)


@pytest.mark.parametrize('damage', ['truncated', 'empty', 'wrong_rows'])
def test_cifar_jpeg_damaged_cache_is_rebuilt(tmp_path, damage):
  _jpeg_npz(tmp_path)
  cache_dir = tmp_path / 'cache'
  good = _load(tmp_path, 'cifar10', cache_dir=str(cache_dir))
  [cache] = [cache_dir / n for n in os.listdir(cache_dir)]
  if damage == 'wrong_rows':  # a complete zip, but not this file's images
    np.savez(cache, x_train=np.zeros((1, 32, 32, 3), np.uint8),
             x_test=np.zeros((2, 32, 32, 3), np.uint8))
  else:
    raw = cache.read_bytes()
    cache.write_bytes(raw[:len(raw) // 2] if damage == 'truncated' else b'')
  logs = []
  s = _load(tmp_path, 'cifar10', cache_dir=str(cache_dir), log=logs.append)
  np.testing.assert_array_equal(s.x_train, good.x_train)
  assert any('incomplete or corrupt' in m and 'rebuilding' in m for m in logs)
  assert 'cached at' in s.source
  with np.load(cache) as rebuilt:  # the cache itself is whole again
    np.testing.assert_array_equal(rebuilt['x_test'], good.x_test)


def test_cifar_jpeg_cache_write_is_atomic(tmp_path, monkeypatch):
  _jpeg_npz(tmp_path)
  cache_dir = tmp_path / 'cache'

  def savez_then_disk_full(f, **arrays):
    f.write(b'PK\x03\x04 half a zip')
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(sources.np, 'savez', savez_then_disk_full)
  s = _load(tmp_path, 'cifar10', cache_dir=str(cache_dir))
  assert s.x_train.shape == (3, 32, 32, 3)
  assert 'not cached: [Errno 28] No space left on device' in s.source
  assert os.listdir(cache_dir) == []  # no half cache, no temp file left


# --------------------------------------------------------------- TFDS offline
def test_offline_tfds_download_fails_in_seconds(tmp_path, monkeypatch):
  """A real attempt: on this offline machine TFDS alone retries each URL
  10 times with backoff (minutes); the pre-check makes it seconds."""
  info = get_info('mnist')
  if sources.download_unreachable(sources._download_urls(info)) is None:
    pytest.skip('the download host is reachable: this machine is online')
  monkeypatch.delenv('JAXCNN_DATA_DIR', raising=False)
  import tensorflow  # noqa: F401  a one-off import, not what is timed
  start = time.monotonic()
  with pytest.raises(DataNotFoundError) as e:
    sources.load('mnist', data_dir=str(tmp_path / 'none'),
                 tfds_data_dir=str(tmp_path / 'tfds'), allow_download=True)
  assert time.monotonic() - start < 10
  msg = str(e.value)
  assert '\n' not in msg
  assert f'(1) local directory {tmp_path / "none"}: does not exist' in msg
  assert f'(2) TFDS prepared copy in {tmp_path / "tfds"}' in msg
  assert (f'(3) TFDS download into {tmp_path / "tfds"}: cannot reach '
          'https://storage.googleapis.com/') in msg
  assert 'looks offline' in msg and 'Fix: ' in msg


def test_download_probe_is_bounded_for_a_silent_host(monkeypatch):
  """A host that accepts the connection but never answers (a black hole)."""
  monkeypatch.setattr(sources, 'PROBE_TIMEOUT_S', 0.5)
  with socket.socket() as server:
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    port = server.getsockname()[1]
    start = time.monotonic()
    why = sources.download_unreachable([f'http://127.0.0.1:{port}/a.gz'])
  assert time.monotonic() - start < 3
  assert why.startswith(f'http://127.0.0.1:{port}/ (') and 'timed out' in why


def test_download_probe_refused_and_answering_hosts():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]  # closed once the block ends
  why = sources.download_unreachable([f'http://127.0.0.1:{port}/x'])
  assert why and 'refused' in why.lower()

  class NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
      self.send_response(404)  # any HTTP answer means "reachable"
      self.end_headers()

    def log_message(self, *args):
      pass
  server = http.server.HTTPServer(('127.0.0.1', 0), NotFound)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    url = f'http://127.0.0.1:{server.server_port}/data/x.gz'
    assert sources.download_unreachable([url]) is None
  finally:
    server.shutdown()
    server.server_close()


def test_reachable_host_still_downloads_through_tfds(tmp_path, monkeypatch):
  calls = []

  def fake_tfds(info, tfds_data_dir, download, log):
    calls.append(download)
    if not download:
      raise AssertionError('Dataset mnist: could not find data')
    return 'downloaded'
  monkeypatch.delenv('JAXCNN_DATA_DIR', raising=False)
  monkeypatch.setattr(sources, 'download_unreachable', lambda urls: None)
  monkeypatch.setattr(sources, 'load_tfds', fake_tfds)
  assert sources.load('mnist', tfds_data_dir=str(tmp_path)) == 'downloaded'
  assert calls == [False, True]
