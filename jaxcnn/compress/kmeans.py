"""Weight sharing by k-means (Deep Compression stage 2, Han et al. 2016).

Each selected kernel gets its own codebook of k = 2^bits centroids
(`bits_conv` for 4-D kernels, `bits_fc` for 2-D ones), initialised
linearly over [min, max], by density (evenly spaced quantiles of the weights'
CDF) or by k-means++, then refined by Lloyd iterations. Only the nonzero
weights are clustered, so a pruned net keeps its zeros exactly zero and its
codebook covers the survivors (`--workdir` a pruned run to combine the two).

Fine-tuning (`WeightSharing`, shared with pq.py) keeps the assignment fixed
and trains the shared values:
  * convert() snaps every selected weight to its centroid, so the params
    already are the shared net;
  * the method state holds, per selected kernel, `slot` (int32, the shared
    value each weight uses; pruned weights point at a last, constant-zero
    slot) and `values` (the shared values, the codebook);
  * pre_forward gathers values[slot] (straight-through, so gradients reach
    the params);
  * transform_grads replaces each weight's gradient by the SUM of the
    gradients of all weights in its slot (`grad='sum'`, the paper's centroid
    gradient; 'mean' divides by the slot size). All members then receive the
    same optimizer update, so the net stays shared through SGD, momentum,
    weight decay or Adam;
  * update_state re-reads the values as the slot means of the new params and
    post_update snaps params (and the EMA) to them, which removes float drift.
The artifact stores each shared kernel as codebook + bit-packed indices
(storage.py 'codebook' / 'sparse_codebook', picked automatically).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.compress import base

INITS = ('linear', 'density', 'kmeans++')


def init_centroids(x: np.ndarray, k: int, init: str,
                   rng: np.random.Generator) -> np.ndarray:
  """k starting centroids for the 1-D sample x (sorted ascending)."""
  x = np.asarray(x, np.float64).reshape(-1)
  if init == 'linear':
    return np.linspace(x.min(), x.max(), k)
  if init == 'density':
    # Evenly spaced on the CDF: dense where the weights are dense.
    return np.quantile(x, (np.arange(k) + 0.5) / k)
  if init == 'kmeans++':
    c = [x[rng.integers(len(x))]]
    d2 = (x - c[0]) ** 2
    for _ in range(1, k):
      total = d2.sum()
      nxt = x[rng.choice(len(x), p=d2 / total)] if total > 0 else c[-1]
      c.append(nxt)
      d2 = np.minimum(d2, (x - nxt) ** 2)
    return np.sort(np.asarray(c))
  raise ValueError(f'kmeans.init must be one of {INITS}, got {init!r}')


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
  """Index of the nearest centroid (1-D: a search among the midpoints)."""
  order = np.argsort(centroids, kind='stable')
  c = centroids[order]
  return order[np.searchsorted((c[1:] + c[:-1]) / 2, x)]


def kmeans1d(x: np.ndarray, k: int, init: str = 'linear',
             iterations: int = 20, seed: int = 0):
  """(centroids [k] float32, idx [n] int32) by Lloyd's algorithm; a centroid
  left without members keeps its position."""
  x = np.asarray(x, np.float64).reshape(-1)
  c = init_centroids(x, k, init, np.random.default_rng(seed))
  idx = assign(x, c)
  for _ in range(iterations):
    counts = np.bincount(idx, minlength=k)
    sums = np.bincount(idx, weights=x, minlength=k)
    c = np.where(counts > 0, sums / np.maximum(counts, 1), c)
    new = assign(x, c)
    if np.array_equal(new, idx):
      break
    idx = new
  return c.astype(np.float32), idx.astype(np.int32)


def quantize_kernel(w: np.ndarray, bits: int, init: str, iterations: int,
                    seed: int) -> np.ndarray:
  """w with every nonzero replaced by its centroid (zeros stay zero)."""
  w = np.asarray(w, np.float32)
  flat = w.reshape(-1).copy()
  nz = np.flatnonzero(flat)
  if len(nz) == 0:
    return w
  c, idx = kmeans1d(flat[nz], 1 << bits, init, iterations, seed)
  flat[nz] = c[idx]
  return flat.reshape(w.shape)


def shared_slots(w: np.ndarray, num_slots: int) -> tuple[np.ndarray,
                                                         np.ndarray]:
  """(slot int32 like w, values [num_slots + 1]) of an already shared
  kernel: one slot per distinct nonzero value; zeros use the last slot."""
  flat = np.asarray(w, np.float32).reshape(-1)
  nz = flat != 0
  vals, inv = np.unique(flat[nz], return_inverse=True)
  if len(vals) > num_slots:
    raise ValueError(f'{len(vals)} distinct weights exceed {num_slots} slots')
  slot = np.full(flat.shape, num_slots, np.int32)
  slot[nz] = inv.reshape(-1)
  values = np.zeros(num_slots + 1, np.float32)
  values[:len(vals)] = vals
  return slot.reshape(w.shape), values


def share_grads(g: jax.Array, slot: jax.Array, n: int, mode: str) -> jax.Array:
  """Every weight's gradient -> the sum (or mean) over its slot; the zero
  slot n gets none."""
  flat = slot.reshape(-1)
  total = jax.ops.segment_sum(g.reshape(-1), flat, num_segments=n + 1)
  if mode == 'mean':
    count = jax.ops.segment_sum(jnp.ones_like(flat, g.dtype), flat,
                                num_segments=n + 1)
    total = total / jnp.maximum(count, 1)
  elif mode != 'sum':
    raise ValueError(f"grad must be 'sum' or 'mean', got {mode!r}")
  total = total.at[n].set(0)
  return total[flat].reshape(g.shape)


def slot_means(w: jax.Array, slot: jax.Array, old: jax.Array) -> jax.Array:
  n = old.shape[0] - 1
  flat = slot.reshape(-1)
  s = jax.ops.segment_sum(w.reshape(-1), flat, num_segments=n + 1)
  c = jax.ops.segment_sum(jnp.ones_like(s[flat]), flat, num_segments=n + 1)
  return jnp.where(c > 0, s / jnp.maximum(c, 1), old).at[n].set(0)


class WeightSharing(base.Method):
  """Shared-value fine-tuning; subclasses define which kernels are shared
  (`_selected`), how (`quantize`) and how many values each has
  (`num_slots`)."""
  encoding = 'auto'  # storage picks codebook / sparse_codebook per leaf

  def _selected(self, params):
    return base.select(params, self.cfg.include, self.cfg.exclude)

  def quantize(self, path: str, w: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  def num_slots(self, w) -> int:
    raise NotImplementedError

  def convert(self, params):
    # The session converts the same dense tree twice (fine-tuning start and
    # the report's no-fine-tuning point); clustering it once is enough.
    cached = getattr(self, '_converted', None)
    if cached is not None and cached[0] is params:
      return cached[1]

    def one(path, w, sel):
      if not sel:
        return w
      # numpy: the cached tree must outlive the donated train state.
      return np.asarray(self.quantize(base.path_str(path), np.asarray(w)),
                        np.float32)
    out = jax.tree_util.tree_map_with_path(
        one, jax.tree.map(np.asarray, params), self._selected(params))
    if not any(jax.tree.leaves(self._selected(params))):
      raise ValueError(f'include={self.cfg.include!r} matches no kernel')
    self._converted = (params, out)
    return out

  def init(self, params):
    slots, values = [], []
    for w, sel in zip(jax.tree.leaves(params),
                      jax.tree.leaves(self._selected(params))):
      if sel:
        s, v = shared_slots(np.asarray(w), self.num_slots(w))
      else:
        s, v = np.zeros((), np.int32), np.zeros((), np.float32)
      slots.append(jnp.asarray(s))
      values.append(jnp.asarray(v))
    treedef = jax.tree.structure(params)
    return {'slot': jax.tree.unflatten(treedef, slots),
            'values': jax.tree.unflatten(treedef, values)}

  def _each(self, fn, params, state):
    """fn(w, slot, values) on shared kernels (their values have a dim)."""
    return jax.tree.map(lambda w, s, v: fn(w, s, v) if v.ndim else w,
                        params, state['slot'], state['values'])

  def pre_forward(self, params, state):
    return self._each(lambda w, s, v: w + jax.lax.stop_gradient(v[s] - w),
                      params, state)

  def transform_grads(self, grads, state):
    return self._each(
        lambda g, s, v: share_grads(g, s, v.shape[0] - 1, self.cfg.grad),
        grads, state)

  def update_state(self, state, params, count):
    del count
    values = jax.tree.map(
        lambda w, s, v: slot_means(w, s, v) if v.ndim else v,
        params, state['slot'], state['values'])
    return {'slot': state['slot'], 'values': values}

  def post_update(self, params, state):
    # Each tree snaps to its own slot means: the EMA stays its own average.
    return self._each(lambda w, s, v: slot_means(w, s, v)[s].astype(w.dtype),
                      params, state)

  def export(self, params, state):
    return {'params': self.post_update(params, state),
            'meta': {'shared_values': {
                base.path_str(p): int(v.shape[0] - 1) for p, v in
                jax.tree_util.tree_flatten_with_path(state['values'])[0]
                if v.ndim}}}


class KMeansShare(WeightSharing):
  """Per-kernel scalar codebooks (k-means weight sharing)."""
  name = 'kmeans'

  def _bits(self, w) -> int:
    return self.cfg.bits_conv if np.ndim(w) > 2 else self.cfg.bits_fc

  def num_slots(self, w) -> int:
    return 1 << self._bits(w)

  def quantize(self, path, w):
    if self.cfg.init not in INITS:
      raise ValueError(f'kmeans.init must be one of {INITS}, got '
                       f'{self.cfg.init!r}')
    return quantize_kernel(w, self._bits(w), self.cfg.init,
                           self.cfg.iterations, self.cfg.seed)


base.register('kmeans', lambda ccfg: KMeansShare(ccfg.kmeans))
