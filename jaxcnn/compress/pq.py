"""Product quantization of Dense kernels: plain PQ (Gong et al. 2014) and
Q-CNN (Wu et al. 2016).

A kernel W [in, out] is cut along its inputs into M = in / d sub-spaces; in
sub-space m every output column t has a sub-vector w_t^m (rows m*d..m*d+d-1)
that is replaced by one of K = 2^bits codewords of that sub-space. Storage:
M*K*d fp32 codewords plus M*out codes of log2 K bits (storage.py 'pq').

  pq    k-means of the sub-vectors: minimises the weight error ||W - W_q||.
  qcnn  minimises the layer's OUTPUT error ||X W - X W_q||_F^2 on calibration
        inputs X (calibrate.input_grams gives G = X^T X). For a sub-space,
        with H = G[m, m] and the error the other sub-spaces leave,
        c_t = (G E)[m, t] - H e_t^m (E = W - W_q, Wu et al.'s error
        correction), the cost of codeword k for column t is
          (w_t - d_k)^T H (w_t - d_k) + 2 (w_t - d_k)^T c_t,
        minimised over assignments, and over d_k in closed form:
          d_k = mean(w_t) + H^-1 mean(c_t)   (t in cluster k).
        It starts from PQ and sweeps the sub-spaces `passes` times.

Both share kmeans.WeightSharing for fine-tuning: the assignment is fixed and
each codeword element's gradient is the sum over the weights using it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.compress import base, calibrate, kmeans


def _subvectors(w: np.ndarray, d: int) -> np.ndarray:
  n_in, n_out = w.shape
  if n_in % d:
    raise ValueError(f'pq.sub_dim={d} does not divide the {n_in} inputs')
  return w.reshape(n_in // d, d, n_out).transpose(0, 2, 1)   # [M, out, d]


def _rebuild(books: np.ndarray, codes: np.ndarray) -> np.ndarray:
  """books [M, K, d], codes [M, out] -> W [M*d, out]."""
  sub = np.take_along_axis(books, codes[..., None], axis=1)   # [M, out, d]
  m, n_out, d = sub.shape
  return sub.transpose(0, 2, 1).reshape(m * d, n_out)


def pq_kmeans(w: np.ndarray, d: int, k: int, iterations: int, seed: int):
  """(books [M, K, d], codes [M, out]): k-means in every sub-space at once,
  initialised with K distinct sub-vectors sampled from each sub-space (so a
  sub-space with <= K distinct sub-vectors is reproduced exactly)."""
  x = _subvectors(np.asarray(w, np.float64), d)
  m, n_out, _ = x.shape
  k = min(k, n_out)
  rng = np.random.default_rng(seed)
  books = np.empty((m, k, d))
  for i in range(m):
    uniq = np.unique(x[i], axis=0)
    pick = rng.choice(len(uniq), min(k, len(uniq)), replace=False)
    books[i] = uniq[np.resize(pick, k)]  # repeats only if < K distinct
  codes = None
  for _ in range(max(iterations, 1)):
    # ||x - b||^2 without the [M, out, K, d] difference array.
    dist = (np.sum(books ** 2, -1)[:, None] -
            2 * np.einsum('mtd,mkd->mtk', x, books))
    new = np.argmin(dist, axis=-1)
    if codes is not None and np.array_equal(new, codes):
      break
    codes = new
    onehot = np.eye(k)[codes]                                  # [M, out, K]
    count = onehot.sum(1)
    mean = np.einsum('mtk,mtd->mkd', onehot, x) / np.maximum(count, 1)[..., None]
    books = np.where(count[..., None] > 0, mean, books)
  return books.astype(np.float32), codes.astype(np.int32)


def output_error(w: np.ndarray, wq: np.ndarray, gram: np.ndarray) -> float:
  """||X (W - W_q)||_F^2 = tr(E^T G E)."""
  e = np.asarray(w, np.float64) - wq
  return float(np.sum(e * (gram @ e)))


def qcnn(w: np.ndarray, gram: np.ndarray, d: int, k: int, iterations: int,
         passes: int, seed: int):
  """(books, codes) minimising the output error on inputs with Gram `gram`."""
  w = np.asarray(w, np.float64)
  books, codes = pq_kmeans(w, d, k, iterations, seed)
  books = books.astype(np.float64)
  x = _subvectors(w, d)
  m_count, n_out, _ = x.shape
  k = books.shape[1]
  g = np.asarray(gram, np.float64)
  # A ridge keeps codewords finite along input directions X barely spans.
  ridge = 1e-2 * np.trace(g) / len(g)
  err = w - _rebuild(books, codes)                             # E [in, out]
  ge = g @ err
  for _ in range(passes):
    for m in range(m_count):
      rows = slice(m * d, (m + 1) * d)
      h = g[rows, rows] + ridge * np.eye(d)
      c = (ge[rows] - h @ err[rows]).T                         # [out, d]
      xm, book = x[m], books[m]
      for _ in range(max(iterations, 1)):
        diff = xm[:, None, :] - book[None]                     # [out, K, d]
        cost = np.einsum('tkd,de,tke->tk', diff, h, diff) + \
            2 * np.einsum('tkd,td->tk', diff, c)
        code = np.argmin(cost, axis=1)
        onehot = np.eye(k)[code]
        count = onehot.sum(0)
        mw = onehot.T @ xm / np.maximum(count, 1)[:, None]
        mc = onehot.T @ c / np.maximum(count, 1)[:, None]
        new = mw + np.linalg.solve(h, mc.T).T
        book = np.where(count[:, None] > 0, new, book)
      books[m], codes[m] = book, code
      new_err = (xm - book[code]).T                            # [d, out]
      ge += g[:, rows] @ (new_err - err[rows])
      err[rows] = new_err
  return books.astype(np.float32), codes.astype(np.int32)


class PQ(kmeans.WeightSharing):
  """Product-quantized Dense kernels with codeword fine-tuning."""
  name = 'pq'

  def _selected(self, params):
    sel = base.select(params, self.cfg.include, self.cfg.exclude)
    return jax.tree.map(lambda s, w: bool(s) and np.ndim(w) == 2, sel,
                             params)

  def _k(self, w) -> int:
    return min(1 << self.cfg.bits, w.shape[1])

  def num_slots(self, w) -> int:
    return (w.shape[0] // self.cfg.sub_dim) * self._k(w) * self.cfg.sub_dim

  def codebooks(self, path, w):
    return pq_kmeans(w, self.cfg.sub_dim, self._k(w), self.cfg.iterations,
                     self.cfg.seed)

  def quantize(self, path, w):
    return _rebuild(*self.codebooks(path, w))

  def init(self, params):
    state = super().init(params)  # validates, shapes the trees
    d = self.cfg.sub_dim

    def slots(w, s, v):
      if not v.ndim:
        return s, v
      x = _subvectors(np.asarray(w), d)
      m, n_out, _ = x.shape
      k = self._k(w)
      out = np.zeros((m, n_out, d), np.int32)
      vals = np.zeros(v.shape, np.float32)
      for i in range(m):
        book, code = np.unique(x[i], axis=0, return_inverse=True)
        base_slot = (i * k + code.reshape(-1)) * d
        out[i] = base_slot[:, None] + np.arange(d)
        vals[(i * k + np.arange(len(book)))[:, None] * d + np.arange(d)] = book
      return (jnp.asarray(out.transpose(0, 2, 1).reshape(w.shape)),
              jnp.asarray(vals))
    pairs = jax.tree.map(slots, params, state['slot'], state['values'])
    is_pair = lambda t: isinstance(t, tuple)
    return {'slot': jax.tree.map(lambda t: t[0], pairs, is_leaf=is_pair),
            'values': jax.tree.map(lambda t: t[1], pairs,
                                        is_leaf=is_pair)}

  def export(self, params, state):
    out = super().export(params, state)
    out['meta']['leaf_encodings'] = {
        'params/' + name: {'encoding': 'pq', 'sub_dim': self.cfg.sub_dim}
        for name in out['meta']['shared_values']}
    return out


class QCNN(PQ):
  """PQ whose codewords minimise the layer's output error (Wu et al.)."""
  name = 'qcnn'
  needs_calibration = True

  def set_calibration(self, model, images, batch_stats):
    self.model, self.calib, self.batch_stats = model, images, batch_stats

  def convert(self, params):
    cached = getattr(self, '_converted', None)
    if cached is not None and cached[0] is params:
      return cached[1]
    self.grams = calibrate.input_grams(
        self.model, {'params': params, 'batch_stats': self.batch_stats},
        self.calib)
    return super().convert(params)

  def codebooks(self, path, w):
    layer = path[:-len('/kernel')]
    return qcnn(w, self.grams[layer], self.cfg.sub_dim, self._k(w),
                self.cfg.iterations, self.cfg.passes, self.cfg.seed)


base.register('pq', lambda ccfg: PQ(ccfg.pq))
base.register('qcnn', lambda ccfg: QCNN(ccfg.pq))
