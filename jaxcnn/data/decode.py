"""Host-side JPEG/PNG decode and resize for the streaming sources.

Runs in grain's worker processes (data/streaming.py): bytes in, uint8
[S, S, 3] out, so batches reach the device as uint8 and data/augment.py does
the rest there, as for the in-memory datasets. Pure functions of the bytes
(and, for the random-resized crop, of a numpy Generator), so the same file
gives the same pixels on every run and in every process.

Resize modes (the image is RGB after decode, whatever it was stored as):
  center_crop  the shorter side scaled to S, then the central SxS (AlexNet,
               Krizhevsky et al. 2012, section 2: 256x256 from each image);
  squash       the whole image scaled to SxS, aspect ratio not kept;
  random_resized (train only) an Inception-style crop: a random box of
               8%..100% of the area and aspect ratio 3/4..4/3, scaled to SxS.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

# Lower-case suffixes read as images; anything else in a class folder is
# ignored with a note (data/imagefolder.py).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.ppm', '.pgm',
                    '.pbm', '.tif', '.tiff', '.webp')
RESIZE_MODES = ('center_crop', 'squash')
RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking (PIL)
_AREA = (0.08, 1.0)
_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
_CROP_TRIES = 10


class BadImage(Exception):
  """The bytes are not a decodable image; the message says why."""


def _box_center(w: int, h: int) -> tuple[float, float, float, float]:
  s = min(w, h)
  x, y = (w - s) / 2, (h - s) / 2
  return (x, y, x + s, y + s)


def _box_random(w: int, h: int, rng: np.random.Generator):
  """torchvision's RandomResizedCrop box; central square after 10 misses."""
  area = w * h
  for _ in range(_CROP_TRIES):
    target = area * rng.uniform(*_AREA)
    ratio = math.exp(rng.uniform(*_LOG_RATIO))
    cw = int(round(math.sqrt(target * ratio)))
    ch = int(round(math.sqrt(target / ratio)))
    if 0 < cw <= w and 0 < ch <= h:
      x = int(rng.integers(0, w - cw + 1))
      y = int(rng.integers(0, h - ch + 1))
      return (x, y, x + cw, y + ch)
  return _box_center(w, h)


def decode(raw: bytes, size: int, mode: str = 'center_crop',
           rng: np.random.Generator | None = None) -> np.ndarray:
  """uint8 [size, size, 3] (size 0: as stored); raises BadImage.

  `rng` given: the random-resized crop (train), else `mode`. JPEGs are
  decoded at the smallest 1/2, 1/4 or 1/8 scale still >= size (PIL draft):
  much faster for large photos, and the same pixels every run.
  """
  try:
    with Image.open(io.BytesIO(raw)) as im:
      if size and rng is None and im.format == 'JPEG':
        im.draft('RGB', (size, size))
      rgb = im.convert('RGB')  # the full decode: truncated data fails here
  except Exception as e:  # PIL raises many types on damaged bytes
    raise BadImage(f'is not a decodable image ({type(e).__name__}: '
                   f'{" ".join(str(e).split())[:200]})') from None
  if not size:
    return np.asarray(rgb)
  w, h = rgb.size
  if rng is not None:
    box = _box_random(w, h, rng)
  elif mode == 'center_crop':
    box = _box_center(w, h)
  elif mode == 'squash':
    box = (0, 0, w, h)
  else:
    raise ValueError(f'resize mode {mode!r} not in {RESIZE_MODES}')
  return np.asarray(rgb.resize((size, size), RESAMPLE, box=box))


def check_header(path: str) -> str | None:
  """None if `path` opens as an image (header only, no pixel decode), else
  why not: the cheap start-up check of every file in an image folder."""
  try:
    with Image.open(path) as im:
      w, h = im.size
  except Exception as e:  # OSError, UnidentifiedImageError, DecompressionBomb
    return (f'is not a readable image ({type(e).__name__}: '
            f'{" ".join(str(e).split())[:200]})')
  if w <= 0 or h <= 0:
    return f'has no pixels ({w}x{h})'
  return None


def check_full(path: str) -> str | None:
  """None if `path` decodes completely, else why not (start-up 'full')."""
  try:
    with open(path, 'rb') as f:
      decode(f.read(), 0)
  except (BadImage, OSError) as e:
    return str(e)
  return None
