"""Checks arrays read from a data file against the dataset registry.

Every loader in sources.py passes what it read through here, naming the file
and field it came from, so a wrong file fails at load time in one line that
says what is wrong and how to fix it, never later inside training.

Policy (the same for every format):
  * images: integers in 0..255, shaped [N, H, W, C] as the registry says
    ([N, H, W] when C is 1). Other integer dtypes within 0..255 are converted
    to uint8 and the conversion is logged; floats, bools, strings and objects
    are refused (their scale is ambiguous: 0..1 or 0..255?).
  * labels: integers in [0, num_classes), shaped [N] or [N, 1]. Float labels
    that are all whole numbers are converted to int32 and logged; fractional,
    NaN/inf, bool, string and object labels are refused.
  * each split has N >= 1 and as many labels as images.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from jaxcnn.data.datasets import DatasetInfo
from jaxcnn.errors import DataFormatError

Log = Callable[[str], None]


def fail(where: str, problem: str, fix: str):
  """Raises the one-line DataFormatError: '<file: field> <problem>. Fix: ...'."""
  msg = f'{where} {problem}. Fix: {fix}'
  raise DataFormatError(' '.join(msg.split()))


def _span(a: np.ndarray) -> str:
  return f'[{a.min()}, {a.max()}]' if a.size else '[]'


def _shape(shape) -> str:
  return '[' + ', '.join(str(d) for d in shape) + ']'


def _not_numeric(a: np.ndarray, where: str, what: str, fix: str):
  kinds = {'O': 'Python objects (dtype object)', 'U': 'strings',
           'S': 'byte strings', 'V': 'raw records', 'M': 'dates',
           'm': 'time deltas', 'b': 'booleans', 'c': 'complex numbers'}
  if a.dtype.kind in kinds:
    fail(where, f'holds {kinds[a.dtype.kind]}, not {what}', fix)


def images(info: DatasetInfo, x, where: str, log: Log) -> np.ndarray:
  """uint8 [N, H, W, C] of `info`, or DataFormatError naming `where`."""
  x = np.asarray(x)
  h, w, c = info.image_shape
  want = f'[N, {h}, {w}, {c}]'
  _not_numeric(x, where, f'{info.name} pixel values',
               'save the images as a uint8 array of 0..255 pixel values')
  shape = x.shape  # as stored, for the message
  if x.ndim == 3 and c == 1:
    x = x[..., None]
  if x.ndim != 4 or x.shape[1:] != info.image_shape:
    hint = f'reshape or resize them to {want}'
    if x.ndim == 4 and x.shape[1:] == (c, h, w):
      hint = 'they look channels-first (NCHW): x.transpose(0, 2, 3, 1)'
    elif x.ndim == 3 and x.shape[1:] == (h, w):
      hint = (f'{info.name} images are {"RGB" if c == 3 else f"{c}-channel"}'
              f'; add the channel axis ({want})')
    fail(where, f'has shape {_shape(shape)}, but {info.name} images are '
         f'{want}', hint)
  if x.dtype.kind == 'f':
    fail(where, f'holds {x.dtype.name} values in {_span(x)}, not uint8 pixels',
         'store uint8 0..255, e.g. np.round(x * 255).astype(np.uint8) for '
         '0..1 floats')
  if x.dtype != np.uint8:
    if x.size and (x.min() < 0 or x.max() > 255):
      fail(where, f'holds {x.dtype.name} values in {_span(x)}, outside the 0..255 '
           'of 8-bit pixels', 'rescale the images to 0..255 and store uint8')
    log(f'{where}: converted {x.dtype.name} images to uint8 (all values in 0..255)')
    x = x.astype(np.uint8)
  return x


def labels(info: DatasetInfo, y, where: str, log: Log) -> np.ndarray:
  """int32 [N] in [0, num_classes), or DataFormatError naming `where`."""
  y = np.asarray(y)
  k = info.num_classes
  _not_numeric(y, where, 'integer class ids',
               f'store integer class ids 0..{k - 1}')
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if y.ndim != 1:
    hint = 'store one integer class id per image'
    if y.ndim == 2 and y.shape[1] == k:
      hint = 'they look one-hot: store y.argmax(1)'
    fail(where, f'has shape {_shape(y.shape)}, not [N] class ids', hint)
  if y.dtype.kind == 'f':
    bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
    if bad.size:
      i = bad[0]
      fail(where, f'holds {y.dtype.name} labels that are not whole numbers '
           f'(index {i} is {float(y[i])}, {bad.size} such)',
           f'store integer class ids 0..{k - 1}; soft or mixed labels are '
           'not supported')
    log(f'{where}: converted {y.dtype.name} labels to int32 (all whole numbers)')
  if y.size and (y.min() < 0 or y.max() >= k):
    i = int(np.flatnonzero((y < 0) | (y >= k))[0])
    fail(where, f'holds labels in {_span(y)} (index {i} is {y[i]}), but '
         f'{info.name} has {k} classes', f'store class ids 0..{k - 1}')
  return y.astype(np.int32)


def split(info: DatasetInfo, name: str, x, y, x_where: str, y_where: str,
          log: Log) -> tuple[np.ndarray, np.ndarray]:
  """Validates one split's images and labels together."""
  x = images(info, x, x_where, log)
  y = labels(info, y, y_where, log)
  if len(x) == 0:
    fail(x_where, f'holds no images (empty {name} data)',
         f'provide at least one {name} image')
  if len(x) != len(y):
    fail(x_where, f'has {len(x)} images but {y_where} has {len(y)} labels',
         'store exactly one label per image')
  return x, y
