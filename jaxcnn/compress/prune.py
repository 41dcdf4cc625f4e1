"""Pruning: magnitude (Han et al.), filter-level (L1/L2 norm), sparsity
regularisers (L1, group lasso over filters).

Masks are the method state (CompressState.method['masks']): float 0/1 arrays
shaped like the selected kernels, a scalar 1.0 for every other leaf. They are
applied in pre_forward (so pruned weights get zero gradient), to the gradients
(so momentum never revives them) and after every update (post_update), which
keeps pruned weights exactly zero through any optimizer.

Schedules of the target sparsity s(t), t = updates since fine-tuning began:
  one_shot   s_f from begin_step on;
  iterative  `rounds` prune -> fine-tune rounds between begin and end step,
             s_k = 1 - (1 - s_f)^(k / rounds): the same fraction of the
             survivors goes each round (Han et al.'s loop, SPEC.md §2);
  gradual    Zhu & Gupta 2017: s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3,
             updated every `frequency` steps.
Weights already pruned have |w| = 0, so they rank first and stay pruned.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.compress import base

SCHEDULES = ('one_shot', 'iterative', 'gradual')


def target_sparsity(cfg, count) -> jax.Array:
  """s(t) for count = updates applied (0 = the loaded dense checkpoint)."""
  t = jnp.asarray(count, jnp.float32)
  b, e, sf = float(cfg.begin_step), float(max(cfg.end_step, cfg.begin_step)), \
      float(cfg.sparsity)
  if cfg.schedule == 'one_shot':
    return jnp.where(t >= b, sf, 0.0)
  if cfg.schedule == 'iterative':
    period = max((e - b) / cfg.rounds, 1.0)
    k = jnp.clip(jnp.floor((t - b) / period) + 1, 0, cfg.rounds)
    return jnp.where(t >= b, 1.0 - (1.0 - sf) ** (k / cfg.rounds), 0.0)
  if cfg.schedule == 'gradual':
    freq = float(max(cfg.frequency, 1))
    tq = jnp.floor((t - b) / freq) * freq  # piecewise constant between updates
    frac = jnp.clip(tq / max(e - b, 1.0), 0.0, 1.0)
    s = sf + (cfg.initial_sparsity - sf) * (1.0 - frac) ** 3
    return jnp.where(t >= b, s, 0.0)
  raise ValueError(f'prune.schedule {cfg.schedule!r} not in {SCHEDULES}')


def is_update_step(cfg, count) -> jax.Array:
  t = jnp.asarray(count)
  if cfg.schedule == 'one_shot':
    return t == cfg.begin_step
  if cfg.schedule == 'iterative':
    period = max((cfg.end_step - cfg.begin_step) // cfg.rounds, 1)
    return (t >= cfg.begin_step) & ((t - cfg.begin_step) % period == 0) & (
        t < cfg.begin_step + cfg.rounds * period)
  freq = max(cfg.frequency, 1)
  return (t >= cfg.begin_step) & (t <= cfg.end_step) & (
      (t - cfg.begin_step) % freq == 0)


def _keep_top(scores: jax.Array, sparsity) -> jax.Array:
  """0/1 mask pruning exactly floor(sparsity * n) lowest scores (rank-based,
  so ties never over-prune)."""
  flat = scores.reshape(-1)
  n = flat.shape[0]
  k = jnp.floor(sparsity * n).astype(jnp.int32)
  ranks = jnp.argsort(jnp.argsort(flat, stable=True), stable=True)
  return (ranks >= k).astype(jnp.float32).reshape(scores.shape)


def magnitude_masks(params, selected, sparsity, scope: str = 'layer'):
  """Masks at `sparsity` over the selected kernels: per layer or global."""
  leaves, treedef = jax.tree.flatten(params)
  sel = jax.tree.leaves(selected)
  if scope == 'layer':
    masks = [_keep_top(jnp.abs(w), sparsity) if s else jnp.ones((), w.dtype)
             for w, s in zip(leaves, sel)]
  elif scope == 'global':
    picked = [jnp.abs(w).reshape(-1) for w, s in zip(leaves, sel) if s]
    flat = _keep_top(jnp.concatenate(picked), sparsity)
    masks, start = [], 0
    for w, s in zip(leaves, sel):
      if s:
        masks.append(flat[start:start + w.size].reshape(w.shape))
        start += w.size
      else:
        masks.append(jnp.ones((), w.dtype))
  else:
    raise ValueError(f"prune.scope must be 'layer' or 'global', got {scope!r}")
  return jax.tree.unflatten(treedef, masks)


def apply_masks(params, masks):
  return jax.tree.map(lambda w, m: w * m.astype(w.dtype), params, masks)


def sparsity_penalty(params, selected, l1: float, group_lasso: float):
  """l1 * sum|w| + group_lasso * sum over output filters of ||W[..., o]||_2."""
  total = jnp.zeros((), jnp.float32)
  for w, s in zip(jax.tree.leaves(params), jax.tree.leaves(selected)):
    if not s:
      continue
    if l1:
      total = total + l1 * jnp.sum(jnp.abs(w))
    if group_lasso:
      per_filter = jnp.sum(jnp.square(w.reshape(-1, w.shape[-1])), axis=0)
      total = total + group_lasso * jnp.sum(jnp.sqrt(per_filter + 1e-12))
  return total


class MagnitudePrune(base.Method):
  """Unstructured magnitude pruning with a schedule; exported sparse."""
  name = 'prune'

  def _selected(self, params):
    return base.select(params, self.cfg.include, self.cfg.exclude)

  def init(self, params):
    ones = jax.tree.map(lambda w: jnp.ones((), w.dtype), params)
    masks = jax.lax.cond(
        is_update_step(self.cfg, 0),
        lambda: magnitude_masks(params, self._selected(params),
                                target_sparsity(self.cfg, 0), self.cfg.scope),
        lambda: self._full(ones, params))
    return {'masks': masks}

  def _full(self, ones, params):
    # Same shapes as the masks `magnitude_masks` returns, so cond/where fit.
    sel = self._selected(params)
    return jax.tree.map(lambda o, w, s: jnp.ones_like(w) if s else o,
                        ones, params, sel)

  def oneshot(self, params):
    """Masks at the final sparsity with no training: 'before fine-tuning'."""
    return {'masks': magnitude_masks(params, self._selected(params),
                                     self.cfg.sparsity, self.cfg.scope)}

  def pre_forward(self, params, state):
    return apply_masks(params, state['masks'])

  def loss(self, params, state):
    del state
    return sparsity_penalty(params, self._selected(params), self.cfg.l1,
                            self.cfg.group_lasso)

  def transform_grads(self, grads, state):
    return apply_masks(grads, state['masks'])

  def update_state(self, state, params, count):
    masks = jax.lax.cond(
        is_update_step(self.cfg, count),
        lambda: magnitude_masks(apply_masks(params, state['masks']),
                                self._selected(params),
                                target_sparsity(self.cfg, count),
                                self.cfg.scope),
        lambda: state['masks'])
    return {'masks': masks}

  def post_update(self, params, state):
    return apply_masks(params, state['masks'])

  def export(self, params, state):
    return {'params': apply_masks(params, state['masks']),
            'meta': {'encoding': 'sparse'}}


def filter_scores(kernel: jax.Array, norm: str) -> jax.Array:
  """Per-output-filter L1 or L2 norm of a [..., out] kernel."""
  w = kernel.reshape(-1, kernel.shape[-1])
  if norm == 'l1':
    return jnp.sum(jnp.abs(w), axis=0)
  if norm == 'l2':
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=0))
  raise ValueError(f"filter_prune.norm must be 'l1' or 'l2', got {norm!r}")


def filter_keep(kernel, ratio: float, norm: str) -> np.ndarray:
  """Sorted indices of the filters kept: the top (1-ratio) by norm."""
  scores = np.asarray(filter_scores(kernel, norm))
  n_keep = max(1, int(round(len(scores) * (1.0 - ratio))))
  return np.sort(np.argsort(-scores, kind='stable')[:n_keep])


def _put(tree: dict, path: str, value):
  node = tree
  parts = path.split('/')
  for p in parts[:-1]:
    node = node.setdefault(p, {})
  node[parts[-1]] = value


class FilterPrune(base.Method):
  """Removes whole filters by L1/L2 norm; exported as a smaller dense net.

  While fine-tuning, the removed filters' kernel slices, biases and the BN
  scale/shift of their channel are masked to zero, so the channel is exactly
  zero after ReLU/pool: that masked net is what structured.compact()
  physically shrinks. Layers (and their BN partners) come from the model's
  call graph, set by `bind`.
  """
  name = 'filter_prune'
  needs_graph = True

  def bind(self, graph):
    self.graph = graph  # structured.Graph of the model

  def init(self, params):
    leaves = base.named_leaves(params)
    masks = {}
    for layer in self.graph.prunable(self.cfg.include, self.cfg.exclude):
      keep = filter_keep(leaves[layer.path + '/kernel'], self.cfg.ratio,
                         self.cfg.norm)
      m = np.zeros(leaves[layer.path + '/kernel'].shape[-1], np.float32)
      m[keep] = 1.0
      masks[layer.path] = jnp.asarray(m)
    return {'filters': masks}

  def oneshot(self, params):
    return self.init(params)

  def _mask(self, params, filters):
    leaves = base.named_leaves(params)
    out = dict(leaves)
    for path, m in filters.items():
      layer = self.graph.by_path[path]
      for name in [path + '/kernel', path + '/bias'] + [
          bn + '/' + k for bn in layer.bns for k in ('scale', 'bias')]:
        if name in out:
          out[name] = out[name] * m.astype(out[name].dtype)
    tree: dict = {}
    for name, v in out.items():
      _put(tree, name, v)
    return tree

  def pre_forward(self, params, state):
    return self._mask(params, state['filters'])

  def transform_grads(self, grads, state):
    return self._mask(grads, state['filters'])

  def post_update(self, params, state):
    return self._mask(params, state['filters'])

  def export(self, params, state):
    keep = {p: np.flatnonzero(np.asarray(m)) for p, m in
            state['filters'].items()}
    return {'params': self._mask(params, state['filters']),
            'meta': {'encoding': 'structured'}, 'keep': keep}


def _factory(cls, section):
  return lambda ccfg: cls(ccfg[section])


base.register('prune', _factory(MagnitudePrune, 'prune'))
base.register('filter_prune', _factory(FilterPrune, 'filter_prune'))
