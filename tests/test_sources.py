"""Data sources: local formats, validation, TFDS (mock data), clear errors."""
import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from jaxcnn.data import sources
from jaxcnn.errors import DataFormatError, DataNotFoundError
from tests.conftest import real_data_dir


def _save_npz(path, n_train=6, n_test=4, shape=(28, 28, 1), classes=10):
  rng = np.random.default_rng(0)
  np.savez(path, x_train=rng.integers(0, 256, (n_train, *shape), np.uint8),
           y_train=np.arange(n_train) % classes,
           x_test=rng.integers(0, 256, (n_test, *shape), np.uint8),
           y_test=np.arange(n_test) % classes)


def test_local_npz_is_first_and_reported(tmp_path):
  _save_npz(tmp_path / 'mnist.npz')
  s = sources.load('mnist', data_dir=str(tmp_path), allow_download=False)
  assert s.x_train.shape == (6, 28, 28, 1) and s.y_test.dtype == np.int32
  assert 'local npz' in s.source and str(tmp_path) in s.source


def test_env_var_points_at_local_dir(tmp_path, monkeypatch):
  _save_npz(tmp_path / 'mnist.npz')
  monkeypatch.setenv('JAXCNN_DATA_DIR', str(tmp_path))
  assert 'local npz' in sources.load('mnist', allow_download=False).source


def test_labels_out_of_range_rejected(tmp_path):
  _save_npz(tmp_path / 'mnist.npz', n_train=12, classes=11)
  with pytest.raises(DataFormatError, match='10 classes'):
    sources.load('mnist', data_dir=str(tmp_path), allow_download=False)


def test_corrupt_npz_names_the_file(tmp_path):
  (tmp_path / 'mnist.npz').write_bytes(b'not a zip file')
  with pytest.raises(DataFormatError, match='mnist.npz'):
    sources.load('mnist', data_dir=str(tmp_path), allow_download=False)


def _cifar_records(n, label_offset=0):
  rng = np.random.default_rng(n)
  chw = rng.integers(0, 256, (n, 3, 32, 32), np.uint8)
  labels = (np.arange(n) + label_offset) % 10
  return chw, labels


def test_cifar_binary_archive_layout(tmp_path):
  """1 label byte + 3072 CHW bytes per record, R then G then B."""
  folder = tmp_path / 'cifar-10-batches-bin'
  folder.mkdir()
  expected = {}
  for name in [f'data_batch_{i}.bin' for i in range(1, 6)] + ['test_batch.bin']:
    chw, labels = _cifar_records(2)
    rec = np.concatenate([labels[:, None].astype(np.uint8),
                          chw.reshape(2, -1)], axis=1)
    (folder / name).write_bytes(rec.tobytes())
    expected[name] = (chw, labels)
  s = sources.load('cifar10', data_dir=str(tmp_path), allow_download=False)
  chw, labels = expected['data_batch_1.bin']
  np.testing.assert_array_equal(s.x_train[:2], chw.transpose(0, 2, 3, 1))
  np.testing.assert_array_equal(s.y_train[:2], labels)
  assert s.x_train.shape == (10, 32, 32, 3) and s.x_test.shape == (2, 32, 32, 3)


def test_cifar_python_tarball(tmp_path):
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode='w:gz') as tar:
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
      chw, labels = _cifar_records(3)
      raw = pickle.dumps({b'data': chw.reshape(3, -1),
                          b'labels': labels.tolist()})
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(raw)
      tar.addfile(info, io.BytesIO(raw))
  (tmp_path / 'cifar-10-python.tar.gz').write_bytes(buf.getvalue())
  s = sources.load('cifar10', data_dir=str(tmp_path), allow_download=False)
  assert s.x_train.shape == (15, 32, 32, 3)
  assert 'archive' in s.source


def test_mnist_idx_files(tmp_path):
  def idx(arr, path):
    header = bytes([0, 0, 8, arr.ndim]) + b''.join(
        int(d).to_bytes(4, 'big') for d in arr.shape)
    with gzip.open(path, 'wb') as f:
      f.write(header + arr.astype(np.uint8).tobytes())
  rng = np.random.default_rng(0)
  idx(rng.integers(0, 256, (5, 28, 28)), tmp_path / 'train-images-idx3-ubyte.gz')
  idx(np.arange(5), tmp_path / 'train-labels-idx1-ubyte.gz')
  idx(rng.integers(0, 256, (3, 28, 28)), tmp_path / 't10k-images-idx3-ubyte.gz')
  idx(np.arange(3), tmp_path / 't10k-labels-idx1-ubyte.gz')
  s = sources.load('mnist', data_dir=str(tmp_path), allow_download=False)
  assert s.x_train.shape == (5, 28, 28, 1) and list(s.y_test) == [0, 1, 2]


def test_missing_dataset_lists_every_source_tried(tmp_path, monkeypatch):
  monkeypatch.delenv('JAXCNN_DATA_DIR', raising=False)
  with pytest.raises(DataNotFoundError) as e:
    sources.load('fashion_mnist', data_dir=str(tmp_path),
                 tfds_data_dir=str(tmp_path / 'tfds'), allow_download=False)
  msg = str(e.value)
  assert '(1) local directory' in msg and '(2) TFDS prepared copy' in msg
  assert 'JAXCNN_DATA_DIR' in msg and 'Traceback' not in msg


def test_tfds_path_with_mock_data(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  monkeypatch.delenv('JAXCNN_DATA_DIR', raising=False)
  with tfds.testing.mock_data(num_examples=12):
    s = sources.load('fashion_mnist', tfds_data_dir=str(tmp_path))
  assert 'TFDS' in s.source
  assert s.x_train.shape == (12, 28, 28, 1) and s.x_train.dtype == np.uint8
  assert s.y_train.max() < 10


def test_digits_is_embedded():
  s = sources.load('digits')
  assert s.x_train.shape == (1437, 8, 8, 1) and s.x_test.shape == (360, 8, 8, 1)
  assert s.x_train.max() == 255


@pytest.mark.skipif(not real_data_dir(), reason='needs JAXCNN_DATA_DIR')
def test_real_mnist_copy():
  s = sources.load('mnist', data_dir=real_data_dir(), allow_download=False)
  assert s.x_train.shape == (60000, 28, 28, 1)
  np.testing.assert_allclose(s.x_train.mean(), 33.318, atol=1e-3)


@pytest.mark.skipif(not real_data_dir() or not os.path.exists(
    os.path.join(real_data_dir() or '', 'cifar10_jpeg_bytes.npz')),
                    reason='needs the CIFAR-10 JPEG copy')
def test_real_cifar10_jpeg_copy_decodes_and_caches(tmp_path):
  s = sources.load('cifar10', data_dir=real_data_dir(),
                   cache_dir=os.environ.get('JAXCNN_CACHE_DIR') or
                   str(tmp_path), allow_download=False)
  assert s.x_train.shape == (50000, 32, 32, 3)
  assert np.bincount(s.y_test).tolist() == [1000] * 10
  np.testing.assert_allclose(s.x_train.reshape(-1, 3).mean(0),
                             (125.27, 122.93, 113.86), atol=0.02)


def test_cifar_python_archive_cannot_run_code(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ('echo pwned > ' + str(tmp_path / 'pwned'),))
  folder = tmp_path / 'cifar-10-batches-py'
  folder.mkdir()
  for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
    (folder / name).write_bytes(pickle.dumps({b'data': Evil()}))
  with pytest.raises(DataFormatError, match='refusing to unpickle'):
    sources.load('cifar10', data_dir=str(tmp_path), allow_download=False)
  assert not (tmp_path / 'pwned').exists()


def test_tfds_download_path_imports_resolve():
  """The TFDS download/prepare code imports importlib_resources lazily, which
  TFDS 4.9.10 does not declare on Python >= 3.9 (requirements.txt pins it):
  a missing module would only show up for users who are online."""
  from tensorflow_datasets.core import dataset_builder
  assert dataset_builder.importlib_resources.abc.Traversable is not None
