"""TensorBoard summaries that need the network's insides, on summary steps only.

What the TF CIFAR-10 tutorial shows (distorted inputs, activation histograms
and sparsity, gradients, weights) costs a second forward/backward pass with
every intermediate kept, so the ordinary train step does none of it. Every
`config.summary_every_steps` the loop calls `summary_step` on that step's
batch before the train step: the same augmentation and dropout keys, the
same (pre-update) weights. Everything is reduced inside the jitted function
(histogram buckets, zero fractions, distinct-value counts), so the host only
receives a few KB plus a handful of images.

Tags written (TensorBoard):
  activations/<layer>, gradients/<param>, weights/<param>   histograms
  sparsity/activations/<layer>   fraction of outputs <= 0, i.e. what a ReLU
      zeroes (for outputs that already passed a ReLU: the zero fraction)
  sparsity/gradients/<param>, sparsity/weights/<param>   exact-zero fraction
  summary/loss, summary/grad_norm
  images: input/augmented (grid of the batch as the net sees it),
          filters/<first conv> (its kernels, when it reads 1 or 3 channels)
  compression runs (the method's pre_forward weights, i.e. what the net
  computes with): compress/sparsity/<kernel>, compress/distinct_values/<kernel>,
  compress/bits_per_weight/<kernel> (ceil(log2(distinct)) when <= 256
  distinct values, i.e. a codebook index; 32 for float weights).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import experiment, losses, parallel, steps
from jaxcnn import plugins as plugins_lib
from jaxcnn.models import flops

NUM_BUCKETS = 30
NUM_IMAGES = 16
MAX_CODEBOOK = 256  # more distinct values than this: treated as float weights


def histogram(x: jax.Array, buckets: int = NUM_BUCKETS) -> jax.Array:
  """[buckets, 3] rows (left edge, right edge, count): TensorBoard's format."""
  x = jnp.ravel(x).astype(jnp.float32)
  lo, hi = jnp.min(x), jnp.max(x)
  hi = jnp.where(hi > lo, hi, lo + 1e-6)  # constant tensor: one thin bucket
  counts, edges = jnp.histogram(x, bins=buckets, range=(lo, hi))
  return jnp.stack([edges[:-1], edges[1:], counts.astype(jnp.float32)], -1)


def distinct_count(x: jax.Array) -> jax.Array:
  s = jnp.sort(jnp.ravel(x))
  return 1 + jnp.sum(s[1:] != s[:-1])


def _name(path) -> str:
  """Module path of an intermediate: dict keys, minus '__call__'."""
  keys = [str(getattr(k, 'key', '')) for k in path]
  keys = [k for k in keys if k and k != '__call__']
  return '/'.join(keys) or 'logits'


def _leaves(tree) -> dict[str, jax.Array]:
  out = {}
  for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if not jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating):
      continue
    name, i = _name(path), 1
    while name in out:  # a module returning several arrays
      i += 1
      name = f'{_name(path)}:{i}'
    out[name] = v
  return out


def first_conv(model, image_shape) -> str | None:
  """Path of the first conv layer in call order (its kernels are drawable)."""
  for s in flops.layer_stats(model, image_shape):
    if 'Conv' in s.kind and s.params:
      return s.path
  return None


def kernel_at(params, path: str):
  node = params
  for k in path.split('/'):
    if not isinstance(node, dict) and not hasattr(node, 'keys'):
      return None
    if k not in node:
      return None
    node = node[k]
  return node.get('kernel') if hasattr(node, 'get') else None


def summary_step(state, batch: dict, *extras, model, options, l2_mask: Any,
                 conv_path: str | None, plugins: tuple = (),
                 num_images: int = NUM_IMAGES) -> dict:
  """Recomputes the step's forward/backward (steps.loss_fn, the train
  step's own objective) with intermediates; no update."""
  objective, images, _ = steps.step_objective(
      state, batch, extras, model=model, options=options, l2_mask=l2_mask,
      plugins=plugins, capture_intermediates=True)
  (loss, aux), grads = jax.value_and_grad(objective,
                                          has_aux=True)(state.params)
  inter, fwd = aux['intermediates'], aux['forward_params']
  changes_forward = any(type(p).forward_params is not
                        plugins_lib.Plugin.forward_params for p in plugins)
  scalars = {'summary/loss': loss,
             'summary/grad_norm': jnp.sqrt(sum(
                 jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))}
  hists = {}
  for name, y in _leaves(inter).items():
    hists[f'activations/{name}'] = histogram(y)
    scalars[f'sparsity/activations/{name}'] = jnp.mean(y <= 0)
  named_w = {losses.path_str(p): v for p, v in
             jax.tree_util.tree_flatten_with_path(state.params)[0]}
  named_g = {losses.path_str(p): v for p, v in
             jax.tree_util.tree_flatten_with_path(grads)[0]}
  for kind, named in (('weights', named_w), ('gradients', named_g)):
    for name, v in named.items():
      hists[f'{kind}/{name}'] = histogram(v)
      scalars[f'sparsity/{kind}/{name}'] = jnp.mean(v == 0)
  if changes_forward:
    for p, v in jax.tree_util.tree_flatten_with_path(fwd)[0]:
      name = losses.path_str(p)
      if not name.endswith('kernel'):
        continue
      d = distinct_count(v)
      scalars[f'compress/sparsity/{name}'] = jnp.mean(v == 0)
      scalars[f'compress/distinct_values/{name}'] = d.astype(jnp.float32)
      scalars[f'compress/bits_per_weight/{name}'] = jnp.where(
          d <= MAX_CODEBOOK, jnp.ceil(jnp.log2(jnp.maximum(d, 1))), 32.0)
  out = {'scalars': scalars, 'hists': hists,
         'images': images[:num_images]}
  if conv_path is not None:
    kernel = kernel_at(fwd, conv_path)
    if kernel is not None and kernel.ndim == 4 and kernel.shape[2] in (1, 3):
      out['filters'] = {conv_path: kernel}
  return out


def make_summary_fn(config, model, params_shape, mesh, state_sharding=None,
                    plugins: tuple = ()):
  """jit of `summary_step` for this run; the state is read, never donated.
  Plugins' extra arguments (a frozen teacher) are passed, not baked in."""
  fn = functools.partial(
      summary_step, model=model, options=steps.options_from_config(config),
      l2_mask=losses.param_mask(params_shape, config.l2.include),
      conv_path=first_conv(model, experiment.input_shape(config)),
      plugins=tuple(plugins))
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  extras = plugins_lib.extra_args(plugins)
  jitted = jax.jit(fn, in_shardings=(state_sharding or repl, data) +
                   (repl,) * len(extras), out_shardings=repl)
  return lambda state, batch: jitted(state, batch, *extras)


# ---------------------------------------------------------------- host side


def to_unit(images: np.ndarray) -> np.ndarray:
  """Each image min-max scaled to [0, 1] (normalised inputs are not)."""
  x = np.asarray(images, np.float32)
  axes = tuple(range(1, x.ndim))
  lo, hi = x.min(axes, keepdims=True), x.max(axes, keepdims=True)
  return (x - lo) / np.maximum(hi - lo, 1e-8)


def tile(images: np.ndarray, cols: int | None = None, pad: int = 1
         ) -> np.ndarray:
  """[N, H, W, C] -> one [rows*(H+pad), cols*(W+pad), C] grid image."""
  n, h, w, c = images.shape
  cols = cols or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c),
                 np.float32)
  for i in range(n):
    r, q = divmod(i, cols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h,
         pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
  return grid


def filter_images(kernel: np.ndarray) -> np.ndarray:
  """HWIO kernel (I = 1 or 3) -> [O, H, W, I] images scaled to [0, 1]."""
  return to_unit(np.transpose(np.asarray(kernel), (3, 0, 1, 2)))


def _hist_metadata(tag: str):
  from tensorboard.plugins.histogram import metadata
  return metadata.create_summary_metadata(display_name=tag, description='')


def write(writer, step: int, host: dict) -> None:
  """Writes one summary_step output (already on the host) (jaxcnn/events.py)."""
  writer.write_scalars(step, {k: float(v) for k, v in host['scalars'].items()})
  imgs = {'input/augmented': tile(to_unit(host['images']))[None]}
  for path, kernel in host.get('filters', {}).items():
    imgs[f'filters/{path}'] = tile(filter_images(kernel))[None]
  writer.write_images(step, imgs)
  hists = {k: np.asarray(v) for k, v in host['hists'].items()}
  writer.write_summaries(step, hists,
                         metadata={k: _hist_metadata(k) for k in hists})
