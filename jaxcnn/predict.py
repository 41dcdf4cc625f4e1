"""Predict the top-3 classes of images with a workdir or an exported model.

  python -m jaxcnn.predict --workdir runs/lenet5_mnist digit.png photo.jpg
  python -m jaxcnn.predict --model lenet5.tflite digit.png    # an exported file

Images go through the evaluation preprocessing of the run's config after
being converted to the dataset's channels (grayscale/RGB) and resized to its
image size. A file that cannot be read gets a one-line error; the rest are
still predicted, and the exit code is 1 if any file failed. An exported
--model (python -m jaxcnn.export) holds the preprocessing itself; its
sidecar FILE.json names the classes (docs/export.md).
"""
from __future__ import annotations

import errno
import functools
import os
import stat
import struct
import sys
import warnings

import jax
import numpy as np
from PIL import ExifTags, Image, ImageOps

from jaxcnn import compile_cache, hostmem, reopen, steps
from jaxcnn.compress import artifact_model, storage
from jaxcnn.data import augment, streaming
from jaxcnn.errors import JaxcnnError, one_line
from jaxcnn.export import runtime as exported_runtime
from jaxcnn.export import sidecar_path as export_sidecar

# Refuse images above ~89 MPix (PIL's default bomb threshold, made an error).
MAX_PIXELS = 89_478_485


class ImageError(JaxcnnError):
  """An input image could not be used."""


# PIL's decoders raise any of these on damaged or hostile files.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error,
                  IndexError, KeyError, TypeError, ZeroDivisionError)
_ALPHA_MODES = ('RGBA', 'LA', 'PA', 'RGBa', 'La')


def _one_line(e) -> str:
  return ' '.join(str(e).split())[:200]


def _refuse_special(path: str, st: os.stat_result) -> None:
  """Only regular, non-empty files are images: a FIFO blocks open() until a
  writer comes, /dev/zero reads forever, a socket cannot be read at all."""
  mode = st.st_mode
  if stat.S_ISDIR(mode):
    raise ImageError(f'{path}: is a directory, not an image file')
  if not stat.S_ISREG(mode):
    kind = ('a FIFO (named pipe)' if stat.S_ISFIFO(mode) else
            'a socket' if stat.S_ISSOCK(mode) else
            'a character device' if stat.S_ISCHR(mode) else
            'a block device' if stat.S_ISBLK(mode) else 'not a regular file')
    raise ImageError(f'{path}: is {kind}, not an image file; pass a regular '
                     'image file')
  if st.st_size == 0:
    raise ImageError(f'{path}: is empty (0 bytes), not an image')


def _open_regular(path: str):
  """A binary file object for `path` if it is a regular, non-empty file.

  O_NONBLOCK makes open() return at once even if the path became a FIFO after
  the stat; fstat on the descriptor then catches that swap."""
  try:
    _refuse_special(path, os.stat(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
  except FileNotFoundError:
    why = 'broken symbolic link' if os.path.islink(path) else 'no such file'
    raise ImageError(f'{path}: {why}') from None
  except PermissionError:
    raise ImageError(f'{path}: permission denied') from None
  except OSError as e:  # ELOOP, ENAMETOOLONG, ENXIO, EIO...
    what = 'symbolic link loop' if e.errno == errno.ELOOP else e.strerror
    raise ImageError(f'{path}: cannot open ({what})') from None
  try:
    _refuse_special(path, os.fstat(fd))
  except ImageError:
    os.close(fd)
    raise
  return os.fdopen(fd, 'rb')


def _wide_to_l(path: str, im):
  """16-bit, 32-bit integer and float gray images to 8-bit 'L', by scaling:
  PIL's convert('L') clips them at 255 instead."""
  a = np.asarray(im).astype(np.float64)
  if not np.isfinite(a).all():
    raise ImageError(f'{path}: {im.mode} image holds NaN or infinite values')
  lo, hi = float(a.min()), float(a.max())
  if im.mode.startswith('I;16'):
    full = 65535.0
  elif lo < 0:
    raise ImageError(f'{path}: {im.mode} image has negative values (min '
                     f'{lo:g}); save it as an 8- or 16-bit image')
  elif im.mode == 'F':  # floats have no fixed range: 0..1 or 0..255
    if hi > 255:
      raise ImageError(f'{path}: float image values reach {hi:g}, outside '
                       '0..1 and 0..255; save it as an 8- or 16-bit image')
    full = 1.0 if hi <= 1 else 255.0
  else:  # 'I': the smallest of the 8-, 16- and 31-bit ranges that holds it
    full = next(f for f in (255.0, 65535.0, 2.0**31 - 1) if hi <= f)
  return Image.fromarray(np.round(a * (255.0 / full)).astype(np.uint8))


def _to_dataset_mode(path: str, im, channels: int):
  """'L' or 'RGB', as the dataset stores images."""
  if im.mode in ('I', 'F') or im.mode.startswith('I;16'):
    im = _wide_to_l(path, im)
  if im.mode in _ALPHA_MODES or 'transparency' in im.info:
    # Transparent pixels become black (MNIST's background); dropping alpha
    # instead would show whatever colour they happen to hold.
    black = Image.new('RGBA', im.size, (0, 0, 0, 255))
    im = Image.alpha_composite(black, im.convert('RGBA'))
  if im.mode not in ('1', 'L', 'RGB'):  # CMYK, YCbCr, LAB, HSV, P, RGBX...
    im = im.convert('RGB')
  return im.convert('L' if channels == 1 else 'RGB')


def _upright(path: str, im, note):
  """Applies the EXIF orientation, as viewers do; bad EXIF is ignored."""
  try:
    orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
  except _DECODE_ERRORS:
    note(f'{path}: unreadable EXIF data; orientation not applied')
    return im
  return ImageOps.exif_transpose(im) if orientation in range(2, 9) else im


def _decode(path: str, im, hw: tuple[int, int], channels: int, note):
  if im.width * im.height > MAX_PIXELS:
    raise ImageError(f'{path}: {im.width}x{im.height} is too large '
                     f'(limit {MAX_PIXELS} pixels)')
  if im.width == 0 or im.height == 0:
    raise ImageError(f'{path}: has zero size ({im.width}x{im.height})')
  frames = getattr(im, 'n_frames', 1)
  if frames > 1:
    note(f'{path}: has {frames} frames; using the first')
    im.seek(0)
  im = _to_dataset_mode(path, _upright(path, im, note), channels)
  if im.size != (hw[1], hw[0]):
    im = im.resize((hw[1], hw[0]), Image.BILINEAR)
  arr = np.asarray(im, np.uint8)
  return arr[..., None] if arr.ndim == 2 else arr


def _note_to_stderr(msg: str) -> None:
  print(f'note: {msg}', file=sys.stderr)


def read_image(path: str, hw: tuple[int, int], channels: int,
               note=_note_to_stderr) -> np.ndarray:
  """uint8 [H, W, C] as the dataset stores images, or a one-line ImageError.

  Only regular files are opened (FIFOs, devices and sockets are refused
  without blocking). The EXIF orientation is applied; alpha is composited
  over black; 16-bit, 32-bit and float images are scaled to 0..255, not
  clipped; of an animated or multi-page file the first frame is used and
  `note` says so.
  """
  with _open_regular(path) as f:
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('error', Image.DecompressionBombWarning)
        with Image.open(f) as im:
          return _decode(path, im, hw, channels, note)
    except ImageError:
      raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning,
            MemoryError):
      raise ImageError(f'{path}: image is too large (decompression bomb '
                       'guard)') from None
    except Image.UnidentifiedImageError:
      raise ImageError(f'{path}: not an image format PIL can read (a text '
                       'file, or damaged?)') from None
    except _DECODE_ERRORS as e:  # truncated data, bad headers, mode errors
      raise ImageError(f'{path}: not a readable image '
                       f'({_one_line(e)})') from None


class Predictor:
  """A workdir's newest intact checkpoint, rebuilt as training saved it
  (jaxcnn/reopen.py: model and plugins, e.g. a compression run's method or
  a joint distillation pair), loaded once; predicts batches of images.
  A Deep Compression workdir predicts with its final artifact."""

  def __init__(self, workdir: str, weights: str | None = None):
    config = reopen.config_of(workdir)
    if reopen.is_driver_output(config):
      self._artifact = ArtifactPredictor(
          os.path.join(workdir, reopen.ARTIFACT), config)
      self.config, self.info = config, self._artifact.info
      self.step, self.weights = None, 'artifact'
      return
    self._artifact = None
    run = reopen.reopen(workdir, config, weights)
    self.config, self.step, self.weights = run.config, run.step, run.weights
    self.info = streaming.dataset_info(config)
    self.params, self.batch_stats = run.params, run.batch_stats
    self._fn = jax.jit(functools.partial(
        steps.predict_step, model=run.model,
        input_spec=augment.spec_from_config(config.input)))

  def predict(self, images: np.ndarray) -> np.ndarray:
    if self._artifact is not None:
      return self._artifact.predict(images)
    return np.asarray(self._fn(self.params, self.batch_stats, images))

  def read(self, path: str) -> np.ndarray:
    h, w, c = self.info.image_shape
    return read_image(path, (h, w), c)


class ArtifactPredictor:
  """--model FILE.jxcz: a compression artifact alone (its metadata names
  the model and, in files from this version on, the eval preprocessing)."""

  def __init__(self, path: str, config=None):
    self.model = artifact_model.load(path, config)
    self.info = self.model.info

  def predict(self, images: np.ndarray) -> np.ndarray:
    return self.model.predict(images)

  def read(self, path: str) -> np.ndarray:
    h, w, c = self.info.image_shape
    return read_image(path, (h, w), c)


def is_artifact(path: str) -> bool:
  """A .jxcz file, by its magic bytes (any name)."""
  try:
    with open(path, 'rb') as f:
      head = f.read(4)
  except OSError:
    return path.endswith('.jxcz')
  return head in storage.MAGICS


class ExportedPredictor:
  """--model: an exported file (jaxcnn.export) run in its own runtime, with
  Predictor's interface; images are read exactly as for --workdir."""

  def __init__(self, path: str, num_threads: int | None = None):
    self.model = exported_runtime.ExportedModel(path, num_threads)
    self.info = self.model.info
    if self.model.meta is None:
      _note_to_stderr(f'{export_sidecar(path)} not found: classes are '
                      'named by index')

  def predict(self, images: np.ndarray) -> np.ndarray:
    return self.model.predict(images)

  def read(self, path: str) -> np.ndarray:
    h, w, c = self.info.image_shape
    return read_image(path, (h, w), c)


def open_predictor(args):
  if args.workdir:
    return Predictor(args.workdir, args.weights)
  if is_artifact(args.model):
    return ArtifactPredictor(args.model)
  return ExportedPredictor(args.model)


def _parse(argv):
  import argparse
  parser = argparse.ArgumentParser(prog='python -m jaxcnn.predict',
                                   description=__doc__.split('\n')[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--workdir', help='a training workdir')
  source.add_argument('--model', help='a file written by python -m '
                      'jaxcnn.export (.tflite or StableHLO), or a compression '
                      'artifact (.jxcz)')
  parser.add_argument('--top', type=int, default=3)
  parser.add_argument('--weights', choices=('auto', 'params', 'ema'),
                      default=None, help='--workdir only; default: the '
                      "run's config.weights (auto: EMA weights if kept)")
  parser.add_argument('images', nargs='+')
  args = parser.parse_args(argv)
  if args.top < 1:
    parser.error(f'--top must be >= 1, got {args.top}')
  if args.model and args.weights is not None:
    parser.error('--weights applies to --workdir; an exported --model '
                 'holds the weights it was exported with')
  return args


def main(argv=None) -> int:
  args = _parse(argv)
  try:
    predictor = open_predictor(args)
  except JaxcnnError as e:
    print(f'error: {one_line(e)}', file=sys.stderr)
    return e.exit_code
  failed = 0
  for path in args.images:
    try:
      probs = predictor.predict(predictor.read(path)[None])[0]
    except JaxcnnError as e:  # ImageError, or an exported model's runtime
      print(f'error: {e}', file=sys.stderr)
      failed += 1
      continue
    top = np.argsort(-probs)[:args.top]
    names = predictor.info.class_names
    print(f'{path}: ' + ', '.join(f'{names[i]} ({probs[i]:.3f})' for i in top),
          flush=True)
  return 1 if failed else 0


if __name__ == '__main__':
  hostmem.keep_freed_memory()  # before any thread allocates (hostmem.py)
  compile_cache.enable()  # reruns and resumes skip XLA compiles
  sys.exit(main())
