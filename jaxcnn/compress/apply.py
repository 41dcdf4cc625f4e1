"""Inference for compressed parameter trees with the unchanged model code.

A compressed net keeps the model's module tree but not its shapes: fewer
filters, or a kernel replaced by low-rank factors. Flax modules check the
shapes they were written for, so `apply` intercepts Conv/Dense/LRN calls and
computes them from the parameters actually present:
  * Conv/Dense with 'kernel': a clone with `features` = the kernel's;
  * Dense with 'u_kernel' [in, r], 'v_kernel' [r, out]: x @ U @ V + b;
  * Conv with 'v_kernel' [kh, 1, cin, r], 'h_kernel' [1, kw, r, cout]: a
    vertical then a horizontal conv (Jaderberg et al.); padding and strides
    split per axis, which equals the full conv of the product kernel;
  * LRN with a 'compress' {'keep': idx} entry: the window sum runs over the
    channels whose original indices are within the window (structured.py).
Everything else runs as written. `macs` (a dict) collects per-layer MACs.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.compress import fixed_point


def _pad_pair(padding, axis: int):
  if isinstance(padding, str):
    return padding
  if isinstance(padding, int):
    return [(padding, padding)] * 2
  pads = [tuple(p) if not isinstance(p, int) else (p, p) for p in padding]
  out = [(0, 0), (0, 0)]
  out[axis] = pads[axis]
  return out


def _axis_only(value, axis: int, default=1):
  if value is None:
    value = default
  v = (value, value) if isinstance(value, int) else tuple(value)
  out = [1, 1]
  out[axis] = v[axis]
  return tuple(out)


def _conv(module: nn.Conv, x, p, macs, path):
  if 'kernel' in p:
    k = p['kernel']
    y = module.clone(parent=None, features=k.shape[-1]).apply({'params': p}, x)
    if macs is not None:
      macs[path] = int(np.prod(y.shape[1:])) * int(np.prod(k.shape[:-1])) // \
          module.feature_group_count
    return y
  v, h = p['v_kernel'], p['h_kernel']
  if isinstance(module.padding, str) and module.padding not in ('SAME',
                                                                'VALID'):
    raise ValueError(f'separable conv: padding {module.padding!r} unsupported')
  kw = dict(use_bias=False, feature_group_count=1, kernel_dilation=1,
            input_dilation=1)
  vert = nn.Conv(v.shape[-1], (v.shape[0], 1),
                 strides=_axis_only(module.strides, 0),
                 padding=_pad_pair(module.padding, 0), **kw)
  t = vert.apply({'params': {'kernel': v}}, x)
  horiz = nn.Conv(h.shape[-1], (1, h.shape[1]),
                  strides=_axis_only(module.strides, 1),
                  padding=_pad_pair(module.padding, 1),
                  use_bias='bias' in p)
  hp = {'kernel': h, **({'bias': p['bias']} if 'bias' in p else {})}
  y = horiz.apply({'params': hp}, t)
  if macs is not None:
    macs[path] = int(np.prod(t.shape[1:])) * v.shape[0] * v.shape[2] + \
        int(np.prod(y.shape[1:])) * h.shape[1] * h.shape[2]
  return y


def _dense(module: nn.Dense, x, p, macs, path):
  if 'kernel' in p:
    k = p['kernel']
    y = module.clone(parent=None, features=k.shape[-1]).apply({'params': p}, x)
    if macs is not None:
      macs[path] = int(np.prod(y.shape[1:])) * k.shape[0]
    return y
  u, v = p['u_kernel'], p['v_kernel']
  y = jnp.dot(jnp.dot(x, u), v)
  if 'bias' in p:
    y = y + p['bias']
  if macs is not None:
    macs[path] = u.shape[0] * u.shape[1] + v.shape[0] * v.shape[1]
  return y


def lrn_kept(module, x, keep):
  """LRN over a channel subset: the window uses the original indices."""
  if module.convention == 'tf':
    before = after = module.depth_radius
    alpha = module.alpha
  else:
    before, after = module.size // 2, (module.size - 1) // 2
    alpha = module.alpha / module.size
  keep = jnp.asarray(keep)
  d = keep[None, :] - keep[:, None]  # [j, c]: orig(c) - orig(j)
  band = ((d <= before) & (d >= -after)).astype(jnp.float32)
  xc = x.astype(jnp.float32)
  s = module.bias + alpha * jnp.matmul(xc * xc, band,
                                      precision=jax.lax.Precision.HIGHEST)
  return (xc * jnp.exp(-module.beta * jnp.log(s))).astype(x.dtype)


def _interceptor(macs, next_fun, args, kwargs, context):
  module = context.module
  # Top-level modules are the model itself or our own per-layer clones.
  if context.method_name != '__call__' or not module.scope.path:
    return next_fun(*args, **kwargs)
  path = '/'.join(str(p) for p in module.scope.path)
  kind = type(module).__name__
  if kind in ('Conv', 'Dense'):
    p = module.variables.get('params', {})
    if 'kernel_q' in p:  # int8/int4: integer conv/matmul (fixed_point.py)
      return fixed_point.int_layer(module, args[0], dict(p), macs, path)
    fn = _conv if kind == 'Conv' else _dense
    return fn(module, args[0], dict(p), macs, path)
  if kind == 'LRN':
    extra = module.variables.get('compress', {})
    if 'keep' in extra:
      return lrn_kept(module, args[0], extra['keep'])
  return next_fun(*args, **kwargs)


def apply(model: nn.Module, variables: dict, x: jax.Array,
          macs: dict | None = None) -> jax.Array:
  """Logits of `model` in inference mode with compressed `variables`
  ({'params', optional 'batch_stats', optional 'compress'})."""
  variables = {k: v for k, v in variables.items() if v}
  with nn.intercept_methods(functools.partial(_interceptor, macs)):
    return model.apply(variables, x, train=False)


def count_macs(model, variables, input_shape) -> dict[str, int]:
  """Per-layer MACs of the compressed net for one image (shapes only)."""
  macs: dict[str, int] = {}
  apply(model, variables, jnp.zeros((1, *input_shape), jnp.float32), macs)
  return macs
