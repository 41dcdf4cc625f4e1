"""Data files that are valid arrays but wrong for the task, in every local
array format sources.py accepts (npz, MNIST IDX, CIFAR-10 python and binary
batches); the JPEG-bytes npz is test_bad_jpeg_data.py's, TFDS offline
test_offline_tfds.py's.

Each wrong file must raise DataFormatError in one line naming the file, the
field, what is wrong and the fix, before any training. Inputs are tiny and
built here.
"""
import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from tests.faults.data_checks import load as _load, refused as _refused


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
