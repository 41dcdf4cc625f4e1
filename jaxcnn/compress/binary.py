"""Binary weights (and inputs) as compress methods: BinaryConnect, BWN, XNOR.

  binary  BinaryConnect (Courbariaux et al. 2015): float latent weights, the
          forward pass uses sign(w) (or, with `stochastic`, +1 with
          probability hard_sigmoid(w) = clip((w+1)/2, 0, 1)); the gradient
          passes straight through Htanh (1 inside [-1, 1], 0 outside) to the
          latent weights, which are clipped to [-1, 1] after every update.
  bwn     Binary-Weight-Networks (Rastegari et al.): alpha * sign(w) with
          alpha = mean|W| per output filter.
  xnor    BWN weights, and every selected layer's input binarised too
          (`act_bits` = 1) with a per-example scale beta = mean|x| (see
          `binarize_input`).

Which layers: `compress.binary.include/exclude` over kernel paths; the CLI
selects every Conv/Dense but the first and the last (they stay float, as in
all three papers). Stochastic sampling draws from
fold_in(key(seed), update count), so it needs no RNG in the train state and
a resumed run draws the same signs.

XNOR's input binarisation cannot be written as a parameter transform, so
`wrap_model` returns the model with a method interceptor that binarises the
input of each selected Conv/Dense call; session.start swaps it in for
training, evaluation and the artifact check. `inference_model` rebuilds the
same wrapper for a loaded artifact from its metadata.
"""
from __future__ import annotations

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.compress import apply as apply_lib
from jaxcnn.compress import base
from jaxcnn.models.binary import binary_weights, htanh_ste, quantize_act


def stochastic_sign(w: jax.Array, key: jax.Array) -> jax.Array:
  """+1 with probability hard_sigmoid(w), else -1; Htanh STE gradient."""
  p = jnp.clip((w + 1.0) / 2.0, 0.0, 1.0)
  b = jnp.where(jax.random.uniform(key, w.shape) < p, 1.0, -1.0)
  return htanh_ste(w, b.astype(w.dtype))


def binarize_input(x: jax.Array, bits: int = 1, center: bool = True
                   ) -> jax.Array:
  """XNOR-Net input binarisation with one scale per example.

  The paper takes K = mean |x| over channels at every spatial position; we
  use beta = mean |x| over the whole example instead, so the scale is a
  scalar per example that multiplies the XNOR-popcount result after the
  layer (bitpack.py) instead of a box-filtered map. Pretrained CIFAR nets
  feed post-ReLU (non-negative) maps to their layers, where sign would be
  all +1, so `center` first subtracts each example's per-channel mean over
  the spatial positions (over all features for a Dense input): the role BN
  plays before BinActiv in a BNN block.
  """
  red = tuple(range(1, x.ndim - 1)) if x.ndim > 2 else (1,)
  if center:
    x = x - jnp.mean(x, axis=red, keepdims=True)
  beta = jnp.mean(jnp.abs(x), axis=tuple(range(1, x.ndim)), keepdims=True)
  beta = jnp.maximum(beta, 1e-8)
  return beta * quantize_act(x / beta, bits)


def _matches(inc, exc, name: str) -> bool:
  return bool(inc.search(name)) and not (exc and exc.search(name))


def _xnor_interceptor(inc, exc, bits, center, next_fun, args, kwargs,
                      context):
  module = context.module
  if context.method_name == '__call__' and module.scope is not None and \
      module.scope.path and type(module).__name__ in ('Conv', 'Dense'):
    name = '/'.join(str(p) for p in module.scope.path) + '/kernel'
    if _matches(inc, exc, name):
      args = (binarize_input(args[0], bits, center), *args[1:])
  return next_fun(*args, **kwargs)


class InterceptedModel:
  """A Flax module whose init/apply run under a method interceptor; every
  other attribute is the wrapped module's."""

  def __init__(self, model: nn.Module, interceptor):
    self.model = model
    self.interceptor = interceptor

  def apply(self, *args, **kwargs):
    with nn.intercept_methods(self.interceptor):
      return self.model.apply(*args, **kwargs)

  def init(self, *args, **kwargs):
    with nn.intercept_methods(self.interceptor):
      return self.model.init(*args, **kwargs)

  def __getattr__(self, name):
    if name in ('model', 'interceptor'):
      raise AttributeError(name)
    return getattr(self.model, name)


def xnor_model(model: nn.Module, include: str, exclude: str = '',
               bits: int = 1, center: bool = True) -> InterceptedModel:
  inc = re.compile(include)
  exc = re.compile(exclude) if exclude else None
  return InterceptedModel(model, functools.partial(
      _xnor_interceptor, inc, exc, bits, center))


def apply_any(model, variables: dict, x: jax.Array) -> jax.Array:
  """apply.apply (compressed inference) for a plain or an xnor-wrapped
  model. Flax runs the earliest-registered interceptor first, and apply.py's
  interceptor computes Conv/Dense itself, so the wrapper's input
  binarisation is registered outside it here."""
  if isinstance(model, InterceptedModel):
    with nn.intercept_methods(model.interceptor):
      return apply_lib.apply(model.model, variables, x)
  return apply_lib.apply(model, variables, x)


def inference_model(model: nn.Module, meta: dict):
  """The model that runs a loaded artifact: xnor artifacts need the input
  binarisation their metadata describes; other methods run as stored.
  Run it with its own `.apply(variables, x)` or with `apply_any`."""
  act = meta.get('binary_inputs')
  if not act:
    return model
  return xnor_model(model, act['include'], act['exclude'], act['bits'],
                    act['center'])


class BinaryConnect(base.Method):
  name = 'binary'
  scale = False          # BWN/XNOR: alpha = mean|W| per output filter
  encoding = 'binary'    # storage.py: 1 bit per weight + alpha per filter

  def __init__(self, cfg):
    super().__init__(cfg)
    b = cfg.binary
    if not 1 <= b.act_bits <= 4:
      raise ValueError(f'act_bits must be 1..4, got {b.act_bits}')
    if b.stochastic and self.scale:
      raise ValueError('stochastic binarisation is BinaryConnect only')
    self.b = b

  def _sel(self, params):
    return base.select(params, self.b.include, self.b.exclude)

  def init(self, params):
    names = [k for k, v in base.named_leaves(self._sel(params)).items() if v]
    if not names:
      raise ValueError(f'include={self.b.include!r} matches no kernel')
    # The update count seeds stochastic sampling (CompressState.count is not
    # passed to pre_forward, so the method keeps its own copy).
    return {'count': jnp.zeros((), jnp.int32)} if self.b.stochastic else {}

  def _binarize(self, params, key=None):
    sel = self._sel(params)
    flat, tree = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for i, ((_, w), s) in enumerate(zip(flat, jax.tree.leaves(sel))):
      if not s:
        out.append(w)
      elif key is not None:
        out.append(stochastic_sign(w, jax.random.fold_in(key, i)))
      else:
        out.append(binary_weights(w, self.scale))
    return jax.tree.unflatten(tree, out)

  def pre_forward(self, params, state):
    if self.b.stochastic:
      key = jax.random.fold_in(jax.random.key(self.b.seed), state['count'])
      return self._binarize(params, key)
    return self._binarize(params)

  def update_state(self, state, params, count):
    del params
    return {'count': count} if self.b.stochastic else state

  def eval_params(self, params):
    return self._binarize(params)

  def post_update(self, params, state):
    del state
    if not self.b.clip:
      return params
    sel = self._sel(params)
    return jax.tree.map(lambda w, s: jnp.clip(w, -1.0, 1.0) if s else w,
                        params, sel)

  def export(self, params, state):
    del state
    names = [k for k, v in base.named_leaves(self._sel(params)).items() if v]
    return {'params': self.eval_params(params),
            'meta': {'binary_layers': names,
                     'binary_scale': 'filter' if self.scale else 'none'}}


class BWN(BinaryConnect):
  name = 'bwn'
  scale = True


class XNOR(BWN):
  name = 'xnor'

  def wrap_model(self, model):
    return xnor_model(model, self.b.include, self.b.exclude,
                      self.b.act_bits, self.b.act_center)

  def export(self, params, state):
    out = super().export(params, state)
    out['meta']['binary_inputs'] = {
        'include': self.b.include, 'exclude': self.b.exclude,
        'bits': self.b.act_bits, 'center': self.b.act_center}
    return out


base.register('binary', BinaryConnect)
base.register('bwn', BWN)
base.register('xnor', XNOR)
