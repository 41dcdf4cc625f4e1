"""The CIFAR-10 JPEG-bytes npz that are valid arrays but wrong for the task,
undecodable images, and its decoded cache (damaged caches are rebuilt,
writes are atomic). Inputs are tiny and built here."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from jaxcnn.data import sources
from tests.faults.data_checks import load as _load, refused as _refused


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
