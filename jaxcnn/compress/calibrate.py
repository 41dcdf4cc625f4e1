"""Calibration data: what each Conv/Dense layer sees on a few real batches.

Q-CNN fits codewords to a layer's output error ||X W - X W_q||, which needs
the Gram matrix X^T X of the layer's inputs; post-training int8 needs each
layer's input range for its activation scale. Both come from one jitted
forward whose interceptor hands every Conv/Dense input to a reduction, so
nothing larger than the reduced statistics leaves the device and any model
in the registry works unchanged.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import experiment
from jaxcnn.data import augment

LAYER_KINDS = ('Conv', 'Dense')


def calibration_images(config, num_batches: int) -> np.ndarray:
  """num_batches x batch_size training images (a seeded random subset),
  preprocessed as for evaluation (no augmentation)."""
  if num_batches < 1:
    raise ValueError(f'calib_batches must be >= 1, got {num_batches}')
  images = experiment.train_subset(config, num_batches * config.batch_size)
  spec = augment.spec_from_config(config.input)
  return np.asarray(augment.preprocess_eval(images, spec))


def layer_path(module) -> str:
  return '/'.join(str(p) for p in module.scope.path)


@functools.partial(jax.jit, static_argnames=('model', 'reduce'))
def _reduced_inputs(model, variables, images, reduce):
  got = {}

  def grab(next_fun, args, kwargs, context):
    m = context.module
    if (context.method_name == '__call__' and m.scope.path and
        type(m).__name__ in LAYER_KINDS):
      got[layer_path(m)] = reduce(args[0])
    return next_fun(*args, **kwargs)
  with nn.intercept_methods(grab):
    model.apply(variables, images, train=False)
  return got


def _over_batches(model, variables, images, reduce, batch: int):
  variables = {k: v for k, v in variables.items() if v}
  for i in range(0, len(images), batch):
    yield jax.device_get(_reduced_inputs(model, variables,
                                         jnp.asarray(images[i:i + batch]),
                                         reduce))


def _abs_percentile(q: float):
  def reduce(x):
    a = jnp.abs(x.astype(jnp.float32)).reshape(-1)
    return jnp.max(a) if q >= 100 else jnp.percentile(a, q)
  return reduce


def input_ranges(model, variables, images, percentile: float = 100.0,
                 batch: int = 256) -> dict[str, float]:
  """Per layer: max over batches of the `percentile` of |input| (a per-batch
  max for 100, i.e. the calibration set's max)."""
  out: dict[str, float] = {}
  for got in _over_batches(model, variables, images,
                           _abs_percentile(float(percentile)), batch):
    for k, v in got.items():
      out[k] = max(out.get(k, 0.0), float(v))
  return out


def _gram(x):
  x = x.astype(jnp.float32).reshape(-1, x.shape[-1])
  return jnp.dot(x.T, x, precision=jax.lax.Precision.HIGHEST)


def input_grams(model, variables, images, batch: int = 256
                ) -> dict[str, np.ndarray]:
  """Per Dense layer: X^T X [in, in] (float64) of its inputs over `images`
  (conv layers get their channel Gram, unused by Q-CNN's FC path)."""
  out: dict[str, np.ndarray] = {}
  for got in _over_batches(model, variables, images, _gram, batch):
    for k, v in got.items():
      out[k] = out.get(k, 0.0) + np.asarray(v, np.float64)
  return out
