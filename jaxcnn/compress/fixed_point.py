"""Fixed-point nets: post-training int8/int4 (`int8`) and quantization-aware
training (`qat`), both run by a real integer inference path.

Weights: symmetric, one scale per output channel (the kernel's last axis),
s_w = max|W[..., o]| / (2^(b-1) - 1), W_q = round(W / s_w) in int8 (int4
values [-7, 7] are stored two per byte by storage.py's packed_int).
Activations: one symmetric scale per layer input, s_x = range / (2^(a-1) - 1),
the range being the max (or a percentile) of |x| over calibration batches
(calibrate.py) of the float net.

Integer path (`int_layer`, called by apply.py for any layer whose params hold
'kernel_q'): x_q = clip(round(x / s_x)) as int8, then
lax.conv_general_dilated / lax.dot_general on int8 x int8 operands with
preferred_element_type=int32, then y = acc * (s_x * s_w) + bias. The layer's
own Flax module runs with its conv / dot function replaced, so strides,
padding, dilation and groups are exactly the model's. Everything between
layers (ReLU, pooling, LRN, BN) stays float.

|acc * s_x * s_w - x W| <= sum |x_q s_x - x| |W| + |x| |W_q s_w - W|, so
per output the error is at most s_x/2 * sum|W| + s_w/2 * sum|x| (+ their
product term); the tests check that bound.

QAT: pre_forward fake-quantizes the selected kernels with a straight-through
estimator (forward: W_q s_w, backward: identity); the export is the same as
post-training quantization of the fine-tuned weights.
"""
from __future__ import annotations

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.compress import base, calibrate


def qmax(bits: int) -> int:
  if not 2 <= bits <= 8:
    raise ValueError(f'bits must be in 2..8, got {bits}')
  return (1 << (bits - 1)) - 1


def weight_scale(w: jax.Array, bits: int) -> jax.Array:
  """Per-output-channel scale [out] of a [..., out] kernel."""
  amax = jnp.max(jnp.abs(w.reshape(-1, w.shape[-1])), axis=0)
  return jnp.where(amax > 0, amax, 1.0) / qmax(bits)


def quantize_weight(w, bits: int):
  """(int8 codes like w, scale [out])."""
  s = weight_scale(jnp.asarray(w, jnp.float32), bits)
  q = jnp.clip(jnp.round(w / s), -qmax(bits), qmax(bits)).astype(jnp.int8)
  return q, s


def fake_quant(w: jax.Array, bits: int) -> jax.Array:
  """W_q * s_w forward, identity backward (straight-through estimator)."""
  q, s = quantize_weight(jax.lax.stop_gradient(w), bits)
  return w + jax.lax.stop_gradient(q.astype(w.dtype) * s - w)


def quantize_act(x: jax.Array, scale, bits) -> jax.Array:
  """bits may be traced (it is a leaf of the artifact's params)."""
  m = 2.0 ** (jnp.asarray(bits, jnp.float32) - 1) - 1
  return jnp.clip(jnp.round(x / scale), -m, m).astype(jnp.int8)


def _int_conv(lhs, rhs, *args, act_scale, w_scale, act_bits, **kwargs):
  kwargs.pop('precision', None)
  acc = jax.lax.conv_general_dilated(
      quantize_act(lhs, act_scale, act_bits), rhs, *args,
      preferred_element_type=jnp.int32, **kwargs)
  return acc.astype(jnp.float32) * (act_scale * w_scale)


def _int_dot(lhs, rhs, dimension_numbers, precision=None, *, act_scale,
             w_scale, act_bits, **kwargs):
  del precision, kwargs
  acc = jax.lax.dot_general(quantize_act(lhs, act_scale, act_bits), rhs,
                            dimension_numbers,
                            preferred_element_type=jnp.int32)
  return acc.astype(jnp.float32) * (act_scale * w_scale)


def _no_promote(*args, dtype=None, inexact=True):
  del dtype, inexact
  return args  # keep the int8 kernel int8


def int_layer(module, x, p, macs=None, path=''):
  """Integer forward of a Conv/Dense whose params are {'kernel_q' int8,
  'kernel_scale' [out], 'act_scale' [], 'act_bits' [] int8, 'bias'?}."""
  q = jnp.asarray(p['kernel_q'])
  fn = functools.partial(
      _int_conv if isinstance(module, nn.Conv) else _int_dot,
      act_scale=jnp.asarray(p['act_scale'], jnp.float32),
      w_scale=jnp.asarray(p['kernel_scale'], jnp.float32),
      act_bits=p['act_bits'])
  hook = ({'conv_general_dilated': fn} if isinstance(module, nn.Conv)
          else {'dot_general': fn})
  clone = module.clone(parent=None, features=q.shape[-1],
                       promote_dtype=_no_promote, **hook)
  params = {'kernel': q, **({'bias': p['bias']} if 'bias' in p else {})}
  y = clone.apply({'params': params}, x)
  if macs is not None:
    groups = getattr(module, 'feature_group_count', 1)
    macs[path] = int(np.prod(y.shape[1:])) * int(np.prod(q.shape[:-1])) // \
        groups
  return y


def _is_layer(path: str, w) -> bool:
  return path.endswith('/kernel') and np.ndim(w) in (2, 4)


class Int8(base.Method):
  """Post-training quantization: weights frozen, artifact in integers."""
  name = 'int8'
  needs_calibration = True  # QAT inherits it
  encoding = 'auto'  # storage packs int4 codes two per byte

  def set_calibration(self, model, images, batch_stats):
    self.model, self.calib, self.batch_stats = model, images, batch_stats

  def _selected(self, params):
    inc = re.compile(self.cfg.include)
    exc = re.compile(self.cfg.exclude) if self.cfg.exclude else None
    names = [p for p, w in base.named_leaves(params).items()
             if _is_layer(p, w) and inc.search(p[:-len('/kernel')])
             and not (exc and exc.search(p[:-len('/kernel')]))]
    if not names:
      raise ValueError(f'include={self.cfg.include!r} matches no Conv/Dense')
    return [n[:-len('/kernel')] for n in names]

  def init(self, params):
    qmax(self.cfg.weight_bits), qmax(self.cfg.act_bits)  # validate early
    self._selected(params)
    return {}

  def wrap_tx(self, tx):
    # PTQ trains nothing: a zero update also skips the optimizer's decay.
    del tx
    return base.with_method_state(optax.set_to_zero(), self)

  def float_params(self, params):
    """The float net whose activations calibrate the scales."""
    return params

  def export(self, params, state):
    del state
    if getattr(self, 'calib', None) is None:
      raise ValueError('int8 export needs calibration images '
                       '(session.start calls set_calibration)')
    fparams = self.float_params(params)
    ranges = calibrate.input_ranges(
        self.model, {'params': fparams, 'batch_stats': self.batch_stats},
        self.calib, self.cfg.act_percentile)
    out = jax.tree.map(np.asarray, params)
    for path in self._selected(params):
      node = out
      for k in path.split('/'):
        node = node[k]
      q, s = quantize_weight(node.pop('kernel'), self.cfg.weight_bits)
      rng = max(ranges[path], 1e-8)
      node.update(kernel_q=np.asarray(q), kernel_scale=np.asarray(s),
                  act_scale=np.float32(rng / qmax(self.cfg.act_bits)),
                  act_bits=np.int8(self.cfg.act_bits))
    return {'params': out, 'meta': {
        'weight_bits': self.cfg.weight_bits, 'act_bits': self.cfg.act_bits,
        'act_ranges': {k: float(v) for k, v in ranges.items()}}}


class QAT(Int8):
  """Fake-quantized weights (STE) during fine-tuning, then Int8's export."""
  name = 'qat'

  def wrap_tx(self, tx):
    return base.with_method_state(tx, self)

  def pre_forward(self, params, state):
    del state
    sel = set(self._selected(params))
    return jax.tree_util.tree_map_with_path(
        lambda p, w: fake_quant(w, self.cfg.weight_bits)
        if base.path_str(p)[:-len('/kernel')] in sel and
        base.path_str(p).endswith('/kernel') else w, params)

  def eval_params(self, params):
    return self.pre_forward(params, None)

  def float_params(self, params):
    return self.pre_forward(params, None)


base.register('int8', lambda ccfg: Int8(ccfg.int8))
base.register('qat', lambda ccfg: QAT(ccfg.int8))
