"""Low-rank approximation (Denton et al. 2014; Jaderberg et al. 2014).

Dense kernel W [in, out] ~ U_r S_r V_r^T, stored as u_kernel = U_r sqrt(S_r)
[in, r] and v_kernel = sqrt(S_r) V_r^T [r, out]: two Dense layers, r(in+out)
weights instead of in*out. Conv kernel K [kh, kw, cin, cout] uses the
spatial/channel separable scheme: reshape to M [(kh, cin), (kw, cout)] and
truncate its SVD, giving a vertical kh x 1 conv to r channels then a
horizontal 1 x kw conv to cout (v_kernel [kh, 1, cin, r], h_kernel
[1, kw, r, cout]): r(kh cin + kw cout) weights instead of kh kw cin cout.

Rank: `rank` if > 0, else the largest r within `param_ratio` of the layer's
weights, else the smallest r retaining `energy` of sum(s^2). The
Frobenius error of the truncation is sqrt(sum of discarded s^2)
(Eckart-Young), which the tests check.

convert() replaces the selected kernels of a dense checkpoint once;
pre_forward rebuilds the dense kernels inside the step, so the unchanged
model trains the factors (gradients flow to U and V); the exported net runs
the factors directly (apply.py).
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from jaxcnn.compress import base


def choose_rank(s: np.ndarray, m: int, n: int, cfg) -> int:
  """Rank for an [m, n] matrix with singular values s (descending)."""
  if cfg.rank > 0:
    r = cfg.rank
  elif cfg.param_ratio > 0:
    r = int(np.floor(cfg.param_ratio * m * n / (m + n)))
  elif cfg.energy > 0:
    e = np.cumsum(s ** 2) / np.sum(s ** 2)
    r = int(np.searchsorted(e, cfg.energy - 1e-12) + 1)
  else:
    raise ValueError('svd: set rank, param_ratio or energy > 0')
  return int(np.clip(r, 1, len(s)))


def factor_dense(w: np.ndarray, r: int):
  u, s, vt = np.linalg.svd(np.asarray(w, np.float64), full_matrices=False)
  root = np.sqrt(s[:r])
  return ((u[:, :r] * root).astype(np.float32),
          (root[:, None] * vt[:r]).astype(np.float32), s)


def conv_matrix(k: np.ndarray) -> np.ndarray:
  kh, kw, cin, cout = k.shape
  return np.transpose(k, (0, 2, 1, 3)).reshape(kh * cin, kw * cout)


def factor_conv(k: np.ndarray, r: int):
  kh, kw, cin, cout = k.shape
  a, b, s = factor_dense(conv_matrix(k), r)
  v = a.reshape(kh, cin, r)[:, None]                       # [kh, 1, cin, r]
  h = b.reshape(r, kw, cout).transpose(1, 0, 2)[None]      # [1, kw, r, cout]
  return v, h, s


def rebuild(node: dict) -> dict:
  """A factorized layer's params -> the dense layer's params."""
  if 'u_kernel' in node:
    out = {'kernel': jnp.dot(node['u_kernel'], node['v_kernel'])}
  elif 'h_kernel' in node:
    out = {'kernel': jnp.einsum('hxcr,ywro->hwco', node['v_kernel'],
                                node['h_kernel'])}
  else:
    return node
  if 'bias' in node:
    out['bias'] = node['bias']
  return out


def _rebuild_tree(params):
  if isinstance(params, dict):
    if 'u_kernel' in params or 'h_kernel' in params:
      return rebuild(params)
    return {k: _rebuild_tree(v) for k, v in params.items()}
  return params


class SVD(base.Method):
  name = 'svd'

  def convert(self, params):
    import re
    inc = re.compile(self.cfg.include)
    conv_inc = re.compile(self.cfg.conv_include) if self.cfg.conv_include \
        else None
    self.ranks = {}

    def walk(node, prefix):
      if not isinstance(node, dict):
        return node
      if 'kernel' in node and not isinstance(node['kernel'], dict):
        k = np.asarray(node['kernel'])
        rest = {n: v for n, v in node.items() if n != 'kernel'}
        if k.ndim == 2 and inc.search(prefix):
          r = choose_rank(np.linalg.svd(k, compute_uv=False), *k.shape,
                          self.cfg)
          u, v, _ = factor_dense(k, r)
          self.ranks[prefix] = r
          return {'u_kernel': jnp.asarray(u), 'v_kernel': jnp.asarray(v),
                  **rest}
        if k.ndim == 4 and conv_inc is not None and conv_inc.search(prefix):
          m = conv_matrix(k)
          r = choose_rank(np.linalg.svd(m, compute_uv=False), *m.shape,
                          self.cfg)
          v, h, _ = factor_conv(k, r)
          self.ranks[prefix] = r
          return {'v_kernel': jnp.asarray(v), 'h_kernel': jnp.asarray(h),
                  **rest}
        return node
      return {n: walk(v, f'{prefix}/{n}' if prefix else n)
              for n, v in node.items()}
    out = walk(params, '')
    if not self.ranks:
      raise ValueError(f'svd.include={self.cfg.include!r} matches no layer')
    return out

  def pre_forward(self, params, state):
    del state
    return _rebuild_tree(params)

  def eval_params(self, params):
    return _rebuild_tree(params)

  def export(self, params, state):
    del state
    return {'params': params, 'meta': {'encoding': 'factorized',
                                       'ranks': dict(self.ranks)}}


base.register('svd', lambda ccfg: SVD(ccfg.svd))
