"""Predict the top-3 classes of image files with a trained workdir.

  python -m jaxcnn.predict --workdir runs/lenet5_mnist digit.png photo.jpg

Images go through the evaluation preprocessing of the run's config after
being converted to the dataset's channels (grayscale/RGB) and resized to its
image size. A file that cannot be read gets a one-line error; the rest are
still predicted, and the exit code is 1 if any file failed.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import warnings

import numpy as np

from jaxcnn.errors import CheckpointError, JaxcnnError

# Refuse images above ~89 MPix (PIL's default bomb threshold, made an error).
MAX_PIXELS = 89_478_485


class ImageError(JaxcnnError):
  """An input image could not be used."""


def load_config(workdir: str):
  import ml_collections
  path = os.path.join(workdir, 'config.json')
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except FileNotFoundError:
    raise CheckpointError(f'{path} not found: is {workdir} a jaxcnn training '
                          'workdir?') from None
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(f'cannot read {path}: {e}') from None


def read_image(path: str, hw: tuple[int, int], channels: int) -> np.ndarray:
  """uint8 [H, W, C] in the dataset's layout, or ImageError."""
  from PIL import Image
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      with Image.open(path) as im:
        if im.width * im.height > MAX_PIXELS:
          raise ImageError(f'{path}: {im.width}x{im.height} is too large '
                           f'(limit {MAX_PIXELS} pixels)')
        im = im.convert('L' if channels == 1 else 'RGB')
        if im.size != (hw[1], hw[0]):
          im = im.resize((hw[1], hw[0]), Image.BILINEAR)
        arr = np.asarray(im, np.uint8)
  except ImageError:
    raise
  except (Image.DecompressionBombError, Image.DecompressionBombWarning):
    raise ImageError(f'{path}: image is too large (decompression bomb '
                     'guard)') from None
  except FileNotFoundError:
    raise ImageError(f'{path}: no such file') from None
  except IsADirectoryError:
    raise ImageError(f'{path}: is a directory, not an image') from None
  except PermissionError:
    raise ImageError(f'{path}: permission denied') from None
  except (OSError, ValueError, SyntaxError) as e:  # PIL's "cannot identify"/truncated
    raise ImageError(f'{path}: not a readable image ({e})') from None
  return arr[..., None] if arr.ndim == 2 else arr


class Predictor:
  """Loads a workdir's latest checkpoint once; predicts batches of images."""

  def __init__(self, workdir: str, weights: str = 'auto'):
    import jax
    from jaxcnn import checkpoint, experiment, parallel, steps
    from jaxcnn.data import augment, datasets
    self.config = config = load_config(workdir)
    self.info = datasets.get_info(config.dataset.name)
    model = experiment.build_model(config)
    template = experiment.state_template(config, parallel.make_mesh())
    directory = os.path.join(workdir, 'checkpoints')
    state, step, _ = checkpoint.load_latest(directory, template)
    if step is None:
      raise CheckpointError(f'no checkpoint in {directory}')
    use_ema = weights == 'ema' or (weights == 'auto' and bool(state.ema_params))
    if use_ema and not state.ema_params:
      raise CheckpointError('--weights=ema but this run kept no EMA')
    self.params = state.ema_params if use_ema else state.params
    self.batch_stats = state.batch_stats
    self.step = step
    self._fn = jax.jit(functools.partial(
        steps.predict_step, model=model,
        input_spec=augment.spec_from_config(config.input)))

  def predict(self, images: np.ndarray) -> np.ndarray:
    return np.asarray(self._fn(self.params, self.batch_stats, images))

  def read(self, path: str) -> np.ndarray:
    h, w, c = self.info.image_shape
    return read_image(path, (h, w), c)


def main(argv=None) -> int:
  import argparse
  parser = argparse.ArgumentParser(prog='python -m jaxcnn.predict',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--top', type=int, default=3)
  parser.add_argument('--weights', choices=('auto', 'params', 'ema'),
                      default='auto', help='auto: EMA weights if kept')
  parser.add_argument('images', nargs='+')
  args = parser.parse_args(argv)
  try:
    predictor = Predictor(args.workdir, args.weights)
  except JaxcnnError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  failed = 0
  for path in args.images:
    try:
      probs = predictor.predict(predictor.read(path)[None])[0]
    except ImageError as e:
      print(f'error: {e}', file=sys.stderr)
      failed += 1
      continue
    top = np.argsort(-probs)[:args.top]
    names = predictor.info.class_names
    print(f'{path}: ' + ', '.join(f'{names[i]} ({probs[i]:.3f})' for i in top),
          flush=True)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
