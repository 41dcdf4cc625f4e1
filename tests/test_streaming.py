"""Streaming input (jaxcnn/data/streaming.py): image folders from the shared
CIFAR-10 JPEG files, TFDS through mock data, exact resume, sharding, eval
coverage, bad images. Folders are written to tmp dirs, never the repo."""
import io
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxcnn import config_checks
from jaxcnn.config_base import base_config
from jaxcnn.data import decode, imagefolder, pipeline, streaming
from jaxcnn.data.stream_sources import ArraySource, TfdsSource
from jaxcnn.errors import ConfigError, DataFormatError, DataNotFoundError

SHARED = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data')
JPEGS = os.path.join(os.environ.get('JAXCNN_DATA_DIR', SHARED),
                     'cifar10_jpeg_bytes.npz')
CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
           'horse', 'ship', 'truck')
PER_CLASS = {'train': 20, 'val': 5}


def _cifar_jpegs():
  if not os.path.exists(JPEGS):
    pytest.skip(f'{JPEGS} not present')
  with np.load(JPEGS) as d:
    return {s: (d[f'{k}_jpeg'], d[f'{k}_offsets'], d[f'y_{k}'])
            for s, k in (('train', 'train'), ('val', 'test'))}


def write_folder(root, jpegs, splits=('train', 'val')):
  """PER_CLASS[split] stored CIFAR-10 JPEGs per class, as files."""
  for split in splits:
    blob, offs, y = jpegs[split]
    for c, name in enumerate(CLASSES):
      os.makedirs(os.path.join(root, split, name), exist_ok=True)
      for i in np.flatnonzero(y == c)[:PER_CLASS[split]]:
        with open(os.path.join(root, split, name, f'{i:05d}.jpg'), 'wb') as f:
          f.write(blob[offs[i]:offs[i + 1]].tobytes())
  return str(root)


@pytest.fixture(scope='module')
def jpegs():
  return _cifar_jpegs()


@pytest.fixture(scope='module')
def folder(tmp_path_factory, jpegs):
  root = write_folder(tmp_path_factory.mktemp('folder'), jpegs)
  with open(os.path.join(root, 'train', 'cat', 'notes.txt'), 'w') as f:
    f.write('not an image')
  os.makedirs(os.path.join(root, 'train', 'zz_empty'))
  return root


def _sources(root, size=32):
  train, val = imagefolder.scan(root, log=lambda m: None)
  return (imagefolder.ImageFolderSource(train, size),
          imagefolder.ImageFolderSource(val, size))


def _ids_source(n, shape=(4, 4, 3)):
  """Images whose first pixels spell the row: batches show which rows."""
  x = np.zeros((n, *shape), np.uint8)
  x[:, 0, 0, 0], x[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
  return ArraySource(x, np.arange(n) % 10), x


def _rows(batch):
  return batch['image'][:, 0, 0, 0].astype(int) + 256 * batch['image'][
      :, 0, 0, 1].astype(int)


def _same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


# ------------------------------------------------------------- folder source
def test_folder_scan_classes_notes_and_pixels(folder, jpegs):
  notes = []
  train, val = imagefolder.scan(folder, log=notes.append)
  assert train.classes == CLASSES == val.classes  # sorted, empty one dropped
  assert len(train.files) == 200 and len(val.files) == 50
  assert any('non-image' in n and 'cat/notes.txt' in n for n in notes)
  assert any('empty class folders' in n and 'zz_empty/' in n for n in notes)
  src = imagefolder.ImageFolderSource(train, 32)
  blob, offs, y = jpegs['train']
  first_ship = int(np.flatnonzero(y == 8)[0])
  rec = src[8 * 20]  # class folders in order, files sorted by name
  want = np.asarray(Image.open(io.BytesIO(
      blob[offs[first_ship]:offs[first_ship + 1]].tobytes())).convert('RGB'))
  np.testing.assert_array_equal(rec['image'], want)  # 32 -> 32: unchanged
  assert rec['label'] == 8 and rec['skipped'] == ()
  big = imagefolder.ImageFolderSource(train, 48, resize_mode='squash')[0]
  assert big['image'].shape == (48, 48, 3) and big['image'].dtype == np.uint8


def test_decode_center_crop_and_random_resized_are_deterministic():
  im = Image.fromarray(np.random.default_rng(0).integers(
      0, 255, (375, 500, 3), np.uint8))
  buf = io.BytesIO()
  im.save(buf, 'JPEG', quality=90)
  raw = buf.getvalue()
  a = decode.decode(raw, 256)
  assert a.shape == (256, 256, 3)
  np.testing.assert_array_equal(a, decode.decode(raw, 256))
  r1 = decode.decode(raw, 64, rng=np.random.default_rng([1, 2]))
  r2 = decode.decode(raw, 64, rng=np.random.default_rng([1, 2]))
  np.testing.assert_array_equal(r1, r2)
  assert not np.array_equal(r1, decode.decode(raw, 64))
  with pytest.raises(decode.BadImage, match='not a decodable image'):
    decode.decode(raw[:len(raw) // 2], 64)


# ------------------------------------------------- order, resume, sharding
def test_stream_equals_in_memory_pipeline():
  """Same order as pipeline.train_batches, batch for batch, across epochs
  (10 steps of 12 over 50 rows: 4 steps per epoch) and for 2 processes."""
  src, x = _ids_source(50)
  y = np.arange(50) % 10
  for p in range(2):
    want = pipeline.train_batches(x, y, 12, 7, 0, p, 2)
    got = streaming.TrainStream(src, 12, 7, 0, p, 2)
    for _ in range(10):
      _same(next(got), next(want))


def test_exact_resume_and_state(folder):
  """Start at step 5, or restore a saved state (JSON round trip) into a
  fresh stream with another worker count: the same batches as one run."""
  train, _ = _sources(folder)
  full = streaming.TrainStream(train, 32, 3, workers=0)
  ref = [next(full) for _ in range(9)]  # 6 steps per epoch: crosses one
  state = json.loads(json.dumps(streaming.TrainStream(
      train, 32, 3, start_step=5).get_state()))
  assert state['next_step'] == 5 and state['source'] == train.fingerprint
  resumed = streaming.TrainStream(train, 32, 3, workers=2)
  resumed.set_state(state)
  try:
    for want in ref[5:]:
      _same(next(resumed), want)
  finally:
    resumed.close()
  assert resumed.get_state()['next_step'] == 9
  restart = streaming.TrainStream(train, 32, 3, start_step=7)
  _same(next(restart), ref[7])


def test_state_of_other_data_is_refused(folder):
  train, _ = _sources(folder)
  state = streaming.TrainStream(train, 32, 3).get_state()
  with pytest.raises(ValueError, match='seed: saved 3, now 4'):
    streaming.TrainStream(train, 32, 4).set_state(state)
  other, _ = _ids_source(200)
  with pytest.raises(ValueError, match='source'):
    streaming.TrainStream(other, 32, 3).set_state(state)


def test_two_processes_read_disjoint_halves_of_each_global_batch():
  src, _ = _ids_source(100)
  whole = streaming.TrainStream(src, 20, 1, 0, 0, 1)
  halves = [streaming.TrainStream(src, 20, 1, 0, p, 2) for p in range(2)]
  seen = []
  for _ in range(5):  # one epoch
    a, b = (_rows(next(h)) for h in halves)
    assert len(a) == len(b) == 10 and not set(a) & set(b)
    np.testing.assert_array_equal(np.sort(np.r_[a, b]),
                                  np.sort(_rows(next(whole))))
    seen += [*a, *b]
  assert sorted(seen) == list(range(100))  # every example once per epoch


def test_eval_counts_every_image_once_across_processes(folder):
  src, _ = _ids_source(53)
  for workers in (0,):
    counted = []
    for p in range(2):
      for b in streaming.EvalStream(src, 16, p, 2, workers=workers):
        assert b['image'].shape[0] == 8
        counted += list(_rows(b)[b['mask'] > 0])
    assert sorted(counted) == list(range(53))
  _, val = _sources(folder)
  batches = list(streaming.EvalStream(val, 16, workers=1))  # a real worker
  assert len(batches) == 4 and sum(b['mask'].sum() for b in batches) == 50
  assert np.bincount(np.concatenate(
      [b['label'][b['mask'] > 0] for b in batches])).tolist() == [5] * 10


# ----------------------------------------------------------------- bad data
@pytest.fixture
def bad_folder(tmp_path, jpegs):
  root = write_folder(tmp_path / 'bad', jpegs)
  good = os.path.join(root, 'train', 'bird', os.listdir(
      os.path.join(root, 'train', 'bird'))[0])
  raw = open(good, 'rb').read()
  with open(os.path.join(root, 'train', 'bird', 'garbage.jpg'), 'wb') as f:
    f.write(b'this is not a jpeg')  # fails the header check
  with open(os.path.join(root, 'train', 'dog', 'truncated.jpg'), 'wb') as f:
    f.write(raw[:len(raw) * 4 // 5])  # header fine, pixels missing
  return root


def _epoch(src, batch=67):
  s = streaming.TrainStream(src, batch, 0, workers=0, log=lambda m: None)
  out = [next(s) for _ in range(s.steps_per_epoch)]
  return out, s.skipped.names


def test_bad_images_skip_is_deterministic_and_named(bad_folder):
  notes = []
  train, _ = imagefolder.scan(bad_folder, log=notes.append)
  garbage = os.path.join(bad_folder, 'train', 'bird', 'garbage.jpg')
  truncated = os.path.join(bad_folder, 'train', 'dog', 'truncated.jpg')
  assert train.dropped == ('bird/garbage.jpg',) and len(train.files) == 201
  assert any(garbage in n and 'not a readable image' in n for n in notes)
  assert any('1 unreadable image(s)' in n for n in notes)
  src = imagefolder.ImageFolderSource(train, 32)
  first, names = _epoch(src)
  assert names == {truncated}  # met at run time, replaced, named
  again, _ = _epoch(imagefolder.ImageFolderSource(
      imagefolder.scan(bad_folder, log=lambda m: None)[0], 32))
  for a, b in zip(first, again):
    _same(a, b)
  full, _ = imagefolder.scan(bad_folder, verify='full', log=lambda m: None)
  assert full.dropped == ('bird/garbage.jpg', 'dog/truncated.jpg')


def test_bad_images_fail_names_the_file(bad_folder):
  garbage = os.path.join(bad_folder, 'train', 'bird', 'garbage.jpg')
  with pytest.raises(DataFormatError, match=garbage):
    imagefolder.scan(bad_folder, on_bad_image='fail')
  train, _ = imagefolder.scan(bad_folder, verify='none', on_bad_image='fail')
  src = imagefolder.ImageFolderSource(train, 32, on_bad_image='fail')
  with pytest.raises(DataFormatError, match='(garbage|truncated).jpg is not'):
    _epoch(src, batch=101)  # 2 steps: every one of the 202 files


def test_class_sets_that_differ_fail_before_training(tmp_path, jpegs):
  root = write_folder(tmp_path / 'f', jpegs)
  os.rename(os.path.join(root, 'val', 'cat'), os.path.join(root, 'val', 'kat'))
  with pytest.raises(DataFormatError, match=r"only in train/: \['cat'\].*"
                     r"only in val/: \['kat'\]"):
    imagefolder.scan(root)
  with pytest.raises(DataNotFoundError, match='lacks val/'):
    imagefolder.scan(write_folder(tmp_path / 'g', jpegs, ('train',)))


# ------------------------------------------------------- config and TFDS
def _folder_config(root):
  c = base_config()
  c.dataset.name, c.dataset.root = 'imagefolder', root
  c.dataset.image_size, c.dataset.workers = 32, 0
  c.batch_size, c.eval_batch_size = 40, 20
  return c


def test_open_train_and_eval_from_config(folder):
  c = _folder_config(folder)
  assert streaming.is_streaming(c) and not streaming.is_streaming(base_config())
  info = streaming.dataset_info(c)
  assert info.num_classes == 10 and info.image_shape == (32, 32, 3)
  it = streaming.open_train(c, start_step=2, process_index=1, process_count=2)
  b = next(it)
  assert b['image'].shape == (20, 32, 32, 3) and b['label'].dtype == np.int32
  assert it.get_state()['next_step'] == 3
  # 50 images in global batches of 20: process 0 has rows 0-9, 20-29, 40-49.
  assert [sum(b['mask'].sum() for b in streaming.open_eval(c, 20, p, 2))
          for p in range(2)] == [30, 20]


def test_config_checks_of_dataset_fields(folder):
  c = _folder_config('')
  with pytest.raises(ConfigError, match='needs dataset.root'):
    config_checks.check(c, 3)
  c = _folder_config(folder)
  c.dataset.on_bad_image = 'ignore'
  with pytest.raises(ConfigError, match='dataset.on_bad_image'):
    config_checks.check(c, 3)
  c = _folder_config(folder)
  c.input.crop = 64
  with pytest.raises(ConfigError, match='input.crop=64 is larger'):
    config_checks.check(c, 3)
  c = _folder_config(folder)
  c.dataset.workers = -2
  with pytest.raises(ConfigError, match='dataset.workers'):
    config_checks.check(c, 3)


def test_tfds_imagenet2012_through_mock_data():
  with tfds.testing.mock_data(num_examples=24,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    src = TfdsSource('imagenet2012', 'train', None, 40)
    assert len(src) == 24 and len(src.class_names) == 1000
    rec = src[3]
    assert rec['image'].shape == (40, 40, 3) and 0 <= rec['label'] < 1000
    c = base_config()
    c.dataset.name, c.dataset.image_size, c.dataset.workers = (
        'imagenet2012', 40, 0)
    c.batch_size, c.eval_batch_size = 8, 10
    a = [next(streaming.open_train(c)) for _ in range(1)][0]
    b = next(streaming.open_train(c))
    _same(a, b)
    assert a['image'].shape == (8, 40, 40, 3)
    ev = list(streaming.open_eval(c))
    assert len(ev) == 3 and sum(e['mask'].sum() for e in ev) == 24
  with pytest.raises(DataNotFoundError, match='tfds build imagenet2012'):
    TfdsSource('imagenet2012', 'train', '/nonexistent/tfds', 40)
