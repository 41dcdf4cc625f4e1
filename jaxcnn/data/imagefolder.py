"""An image-folder dataset, as torchvision's ImageFolder lays it out:

  ROOT/train/<class>/*.jpg      training images (sub-folders are walked)
  ROOT/val/<class>/*.jpg        evaluation images (or ROOT/test/<class>/...)

Classes are the sorted names of the non-empty class folders; label i is the
i-th. `scan` lists both splits once at start-up, before any training:
  * files whose suffix is not an image's (decode.IMAGE_EXTENSIONS), files
    directly under train/ or val/, and empty class folders are ignored, each
    with a note;
  * train and val class sets that differ are a DataFormatError;
  * every image is checked ('header': opened, header parsed; 'full': decoded
    completely; 'none'): one that fails is dropped with a warning naming it
    (on_bad_image='skip', the dropped files are counted) or raises at once
    naming it ('fail'). The index is then the same on every run.
An image that passes the check and still fails to decode in a worker is
handled by stream_sources.EncodedSource (the same policy, deterministic).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import zlib
from typing import Callable

import numpy as np

from jaxcnn.data import decode, stream_sources, validate
from jaxcnn.errors import DataNotFoundError

EVAL_DIRS = ('val', 'test')
VERIFY_MODES = ('header', 'full', 'none')
_SHOWN = 5  # example names per note
_CHECK_THREADS = 16  # header checks wait on the disk; PIL decode drops the GIL
Log = Callable[[str], None]


class Paths:
  """Relative paths as one UTF-8 blob + offsets: a million names pickle as
  two objects into each grain worker instead of a million strings."""

  def __init__(self, names: list[str]):
    raw = [n.encode() for n in names]
    self._blob = b''.join(raw)
    self._offsets = np.cumsum([0] + [len(r) for r in raw], dtype=np.int64)

  def __len__(self) -> int:
    return len(self._offsets) - 1

  def __getitem__(self, i: int) -> str:
    a, b = self._offsets[i], self._offsets[i + 1]
    return self._blob[a:b].decode()


@dataclasses.dataclass
class FolderSplit:
  """One split's index: sorted classes, files in class then name order."""
  split_dir: str
  classes: tuple[str, ...]
  files: list[str]          # relative to split_dir
  labels: np.ndarray        # int32, index into classes
  dropped: tuple[str, ...] = ()  # bad files left out by the start-up check


def _list_class(class_dir: str) -> tuple[list[str], list[str]]:
  """(image files, other files) under class_dir, relative, sorted."""
  images, other = [], []
  for here, dirs, names in os.walk(class_dir, followlinks=True):
    dirs.sort()
    for name in sorted(names):
      rel = os.path.relpath(os.path.join(here, name), class_dir)
      ext = os.path.splitext(name)[1].lower()
      (images if ext in decode.IMAGE_EXTENSIONS else other).append(rel)
  return images, other


def _note(log: Log, what: str, names: list[str], why: str) -> None:
  if names:
    shown = ', '.join(names[:_SHOWN]) + (
        f', ... ({len(names) - _SHOWN} more)' if len(names) > _SHOWN else '')
    log(f'image folder: ignoring {len(names)} {what} ({why}): {shown}')


def list_split(split_dir: str, log: Log) -> dict[str, list[str]]:
  """{class: relative image paths} of the non-empty class folders."""
  try:
    entries = sorted(os.scandir(split_dir), key=lambda e: e.name)
  except OSError as e:
    raise DataNotFoundError(f'{split_dir} cannot be listed ({e}). Fix: point '
                            '--config.dataset.root at a readable folder') from None
  classes, loose, other, empty = {}, [], [], []
  for e in entries:
    if not e.is_dir():
      loose.append(e.name)
      continue
    images, rest = _list_class(e.path)
    other += [os.path.join(e.name, r) for r in rest]
    if images:
      classes[e.name] = [os.path.join(e.name, r) for r in images]
    else:
      empty.append(e.name + '/')
  _note(log, f'files directly in {split_dir}', loose,
        'images belong in a class folder')
  _note(log, f'non-image files in {split_dir}', other,
        f'suffix not in {" ".join(decode.IMAGE_EXTENSIONS)}')
  _note(log, f'empty class folders in {split_dir}', empty, 'no image files')
  return classes


def find_split_dirs(root: str) -> tuple[str, str]:
  """(train dir, eval dir) under root, or DataNotFoundError saying what's
  missing."""
  fix = ('Fix: lay the images out as ROOT/train/<class>/* and '
         'ROOT/val/<class>/* (or ROOT/test/<class>/*) and pass '
         '--config.dataset.root=ROOT')
  if not root or not os.path.isdir(root):
    raise DataNotFoundError(f'image folder root {root!r} is not a directory. '
                            + fix)
  train = os.path.join(root, 'train')
  evals = [os.path.join(root, d) for d in EVAL_DIRS
           if os.path.isdir(os.path.join(root, d))]
  if not os.path.isdir(train) or not evals:
    raise DataNotFoundError(f'image folder {root} lacks '
                            f'{"train/" if not os.path.isdir(train) else "val/"}'
                            f' (it has {sorted(os.listdir(root))}). ' + fix)
  return train, evals[0]


def check_classes(root: str, train: dict, val: dict, val_dir: str) -> None:
  only_train = sorted(set(train) - set(val))
  only_val = sorted(set(val) - set(train))
  if only_train or only_val:
    name = os.path.basename(val_dir)
    more = lambda s: ' ...' if len(s) > 10 else ''
    validate.fail(root, f'has different class folders in train/ and {name}/ '
                  f'(only in train/: {only_train[:10]}{more(only_train)}; '
                  f'only in {name}/: {only_val[:10]}{more(only_val)})',
                  'give both splits the same non-empty class folders; '
                  'classes are the sorted folder names')


def _verify(split_dir: str, files: list[str], verify: str, on_bad: str,
            log: Log) -> set[str]:
  """The relative paths that fail the start-up check (all of them with
  'skip'; the first one raises with 'fail')."""
  if verify == 'none':
    return set()
  check = decode.check_header if verify == 'header' else decode.check_full
  threads = _CHECK_THREADS if verify == 'header' else (os.cpu_count() or 1)
  bad = set()
  with concurrent.futures.ThreadPoolExecutor(threads) as ex:
    paths = [os.path.join(split_dir, f) for f in files]
    for rel, path, why in zip(files, paths, ex.map(check, paths,
                                                  chunksize=256)):
      if why is None:
        continue
      if on_bad == 'fail':
        ex.shutdown(cancel_futures=True)
        validate.fail(path, why, 'remove or replace the file, or set '
                      '--config.dataset.on_bad_image=skip to leave it out')
      log(f'image folder: skipping {path}: {why}')
      bad.add(rel)
  return bad


def _index(split_dir: str, classes: tuple[str, ...], listed: dict,
           verify: str, on_bad: str, log: Log) -> FolderSplit:
  files = [f for c in classes for f in listed[c]]
  labels = np.concatenate([np.full(len(listed[c]), i, np.int32)
                           for i, c in enumerate(classes)])
  bad = _verify(split_dir, files, verify, on_bad, log)
  if bad:
    keep = np.array([f not in bad for f in files])
    files = [f for f, k in zip(files, keep) if k]
    labels = labels[keep]
    log(f'image folder: {len(bad)} unreadable image(s) in {split_dir} left '
        f'out by the start-up check ({verify}); {len(files)} remain')
  if not files:
    validate.fail(split_dir, 'has no readable images', 'add images')
  return FolderSplit(split_dir, classes, files, labels, tuple(sorted(bad)))


def scan(root: str, verify: str = 'header', on_bad_image: str = 'skip',
         log: Log = logging.warning) -> tuple[FolderSplit, FolderSplit]:
  """(train, eval) indexes of ROOT; every check above, before training."""
  if verify not in VERIFY_MODES:
    raise ValueError(f'verify {verify!r} not in {VERIFY_MODES}')
  train_dir, eval_dir = find_split_dirs(root)
  train, val = list_split(train_dir, log), list_split(eval_dir, log)
  if not train:
    validate.fail(train_dir, 'has no non-empty class folders',
                  'put the images in train/<class>/')
  check_classes(root, train, val, eval_dir)
  classes = tuple(sorted(train))
  return (_index(train_dir, classes, train, verify, on_bad_image, log),
          _index(eval_dir, classes, val, verify, on_bad_image, log))


def class_names(root: str) -> tuple[str, ...]:
  """The classes as `scan` finds them, from listings only (no checks of
  the images): cheap enough for building the model's output layer."""
  train_dir, _ = find_split_dirs(root)
  return tuple(sorted(list_split(train_dir, lambda m: None)))


class ImageFolderSource(stream_sources.EncodedSource):
  """One scanned split, decoded and resized to size x size on access."""

  def __init__(self, split: FolderSplit, size: int,
               resize_mode: str = 'center_crop', on_bad_image: str = 'skip'):
    super().__init__(size, resize_mode, on_bad_image)
    self._dir = split.split_dir
    self._files = Paths(split.files)
    self._labels = split.labels
    self._n = len(split.files)
    self.class_names = split.classes
    # A sample of the names: cheap, and catches a different tree.
    crc = zlib.crc32('\n'.join(split.files[::max(1, self._n // 1000)])
                     .encode())
    self.fingerprint = (f'folder:{os.path.abspath(self._dir)}:{self._n}:'
                        f'{len(self.class_names)}:{crc:08x}')
    self.describe = (f'image folder {self._dir} ({self._n} images, '
                     f'{len(self.class_names)} classes)')

  def _record(self, i: int) -> tuple[bytes, int, str]:
    path = os.path.join(self._dir, self._files[i])
    with open(path, 'rb') as f:
      return f.read(), int(self._labels[i]), path

