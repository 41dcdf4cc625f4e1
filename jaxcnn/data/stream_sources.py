"""Random-access sources for the streaming pipeline (data/streaming.py).

One interface for in-memory arrays, TFDS prepared datasets (ArrayRecord, read
with `tfds.data_source`) and image folders (data/imagefolder.py):

  len(src)                  number of examples
  src[i], src.load(i, rng)  {'image': uint8 [H, W, C], 'label': int,
                             'skipped': tuple of names of undecodable images
                             replaced by this one (see below)}; `rng` (a numpy
                             Generator) asks for the random-resized crop
  src.image_shape           (H, W, C) of every image
  src.class_names           tuple of names, index = label
  src.fingerprint           short string naming the data, for iterator state
  src.describe              one line for the log

Objects are pickled into grain's worker processes, so they hold paths and
small arrays, never open files.

Undecodable images (EncodedSource): with on_bad_image='fail' the first one
raises DataFormatError naming it; with 'skip' example i is replaced by the
next decodable one (i+1, i+2, ... in source order) and the bad names travel
with the record, so the stream logs and counts them. Decoding is a pure
function of the bytes, so the replacement is the same on every run.
"""
from __future__ import annotations

import zlib

import numpy as np
import tensorflow_datasets as tfds  # no TensorFlow import: tfds is lazy

from jaxcnn.data import decode, validate
from jaxcnn.errors import DataNotFoundError

BAD_IMAGE_POLICIES = ('skip', 'fail')
# Consecutive undecodable images before 'skip' gives up: that many in a row
# is a broken dataset, not a few damaged files.
MAX_CONSECUTIVE_BAD = 64


class ArraySource:
  """The in-memory datasets (data/sources.py) behind the same interface."""

  def __init__(self, images: np.ndarray, labels: np.ndarray,
               class_names=(), name: str = 'arrays'):
    if images.ndim == 3:
      images = images[..., None]
    self._images, self._labels = images, np.asarray(labels, np.int32)
    self.image_shape = tuple(images.shape[1:])
    self.class_names = tuple(class_names)
    crc = zlib.crc32(self._labels.tobytes())
    self.fingerprint = f'{name}:{len(images)}:{crc:08x}'
    self.describe = f'{name} in memory ({len(images)} images)'

  def __len__(self) -> int:
    return len(self._images)

  def __getitem__(self, i: int) -> dict:
    return self.load(i)

  def load(self, i: int, rng=None) -> dict:
    del rng  # stored images are already at their size
    return {'image': self._images[i], 'label': int(self._labels[i]),
            'skipped': ()}


class EncodedSource:
  """Encoded images decoded and resized to size x size on access.

  Subclasses set `_n`, `class_names`, `fingerprint`, `describe` and give
  `_record(i) -> (bytes, label, name)`; an OSError there counts as a bad
  image.
  """

  def __init__(self, size: int, resize_mode: str, on_bad_image: str):
    if size <= 0:
      raise ValueError(f'image size must be > 0 to batch images, got {size}')
    if on_bad_image not in BAD_IMAGE_POLICIES:
      raise ValueError(f'on_bad_image {on_bad_image!r} not in '
                       f'{BAD_IMAGE_POLICIES}')
    if resize_mode not in decode.RESIZE_MODES:
      raise ValueError(f'resize mode {resize_mode!r} not in '
                       f'{decode.RESIZE_MODES}')
    self.size, self.resize_mode = size, resize_mode
    self.on_bad_image = on_bad_image
    self.image_shape = (size, size, 3)
    self._n = 0

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, i: int) -> dict:
    return self.load(i)

  def _record(self, i: int) -> tuple[bytes, int, str]:
    raise NotImplementedError

  def load(self, i: int, rng: np.random.Generator | None = None) -> dict:
    skipped = []
    for k in range(min(self._n, MAX_CONSECUTIVE_BAD)):
      j = (int(i) + k) % self._n
      name = str(j)
      try:
        raw, label, name = self._record(j)
        image = decode.decode(raw, self.size, self.resize_mode, rng)
      except (decode.BadImage, OSError) as e:
        why = str(e) if isinstance(e, decode.BadImage) else (
            f'cannot be read ({type(e).__name__}: {e})')
        if self.on_bad_image == 'fail':
          validate.fail(name, why, 'remove or replace the file, or set '
                        "--config.dataset.on_bad_image=skip")
        skipped.append(name)
        continue
      return {'image': image, 'label': label, 'skipped': tuple(skipped)}
    validate.fail(f'{self.describe}: examples {i}..{i + len(skipped) - 1}',
                  f'are {len(skipped)} undecodable images in a row (first: '
                  f'{skipped[0]})', 'the dataset is damaged; rebuild it')


class TfdsSource(EncodedSource):
  """A TFDS dataset prepared as ArrayRecord, read with tfds.data_source.

  Images are read as the stored bytes (SkipDecoding) and decoded here with
  PIL, as the folder source does; no TensorFlow at read time.
  """

  def __init__(self, name: str, split: str, data_dir: str | None, size: int,
               resize_mode: str = 'center_crop', on_bad_image: str = 'skip'):
    super().__init__(size, resize_mode, on_bad_image)
    where = data_dir or '~/tensorflow_datasets (TFDS default)'
    try:
      self._ds = tfds.data_source(
          name, split=split, data_dir=data_dir, download=False,
          decoders={'image': tfds.decode.SkipDecoding()})
    except Exception as e:  # DatasetNotFoundError, missing ArrayRecord, ...
      first = ' '.join(str(e).split())[:300]
      raise DataNotFoundError(
          f'TFDS {name} split {split!r} is not prepared as ArrayRecord in '
          f'{where} ({type(e).__name__}: {first}). Fix: prepare it once with '
          f'`tfds build {name} --data_dir=DIR --file_format=array_record` '
          '(ImageNet: put the manually downloaded tars in DIR/downloads/'
          'manual first, docs/data.md) and pass --config.tfds_data_dir=DIR'
      ) from None
    self._name, self._split = name, split
    self._n = len(self._ds)
    self.class_names = tuple(self._ds.dataset_info.features['label'].names)
    version = self._ds.dataset_info.version
    self.fingerprint = f'tfds:{name}:{version}:{split}:{self._n}'
    self.describe = (f'TFDS {name} {version} split {split} ({self._n} '
                     f'images, ArrayRecord in {where})')

  def _record(self, i: int) -> tuple[bytes, int, str]:
    ex = self._ds[i]
    name = f'TFDS {self._name}/{self._split}[{i}]'
    file_name = ex.get('file_name')
    if file_name is not None and np.ndim(file_name) == 0:
      fn = np.asarray(file_name).item()
      name = f'{name} ({fn.decode() if isinstance(fn, bytes) else fn})'
    return ex['image'], int(ex['label']), name
