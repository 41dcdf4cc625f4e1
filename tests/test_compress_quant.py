"""Quantization: k-means weight sharing, PQ / Q-CNN, int8 integer path and
the bit-packed artifacts (docs/quantization.md)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxcnn.compress import apply, base, fixed_point, kmeans, pq, storage


def _km_cfg(**kw):
  c = ml_collections.ConfigDict(dict(
      include='.*', exclude='', bits_conv=2, bits_fc=2, init='linear',
      iterations=20, seed=0, grad='sum'))
  c.update(kw)
  return c


def test_centroid_gradient_is_the_sum_over_its_weights():
  # Two shared values (slots 0, 1) and a pruned weight (slot 2 = zero).
  slot = jnp.array([[0, 1], [0, 2], [1, 0]], jnp.int32)
  g = jnp.array([[1., 10.], [2., 100.], [20., 4.]])
  got = kmeans.share_grads(g, slot, 2, 'sum')
  np.testing.assert_array_equal(got, [[7., 30.], [7., 0.], [30., 7.]])
  mean = kmeans.share_grads(g, slot, 2, 'mean')
  np.testing.assert_allclose(mean, [[7 / 3, 15.], [7 / 3, 0.], [15., 7 / 3]])
  # The method does the same through its hooks on a whole tree.
  m = kmeans.KMeansShare(_km_cfg(bits_fc=1))
  params = {'d': {'kernel': jnp.array([[1., 3.], [1., 0.], [3., 1.]]),
                  'bias': jnp.ones(2)}}
  state = m.init(params)
  grads = {'d': {'kernel': g, 'bias': jnp.array([5., 6.])}}
  out = m.transform_grads(grads, state)
  np.testing.assert_array_equal(out['d']['kernel'], got)
  np.testing.assert_array_equal(out['d']['bias'], [5., 6.])


def test_kmeans_keeps_pruned_zeros_and_sharing_through_training():
  w = np.array(jax.random.normal(jax.random.key(0), (6, 40)))
  w[np.abs(w) < 0.6] = 0.0
  params = {'fc': {'kernel': jnp.asarray(w), 'bias': jnp.zeros(40)}}
  m = kmeans.KMeansShare(_km_cfg(bits_fc=2))
  q = m.convert(params)
  k = np.asarray(q['fc']['kernel'])
  np.testing.assert_array_equal(k == 0, w == 0)
  assert len(np.unique(k[k != 0])) <= 4
  tx = m.wrap_tx(optax.sgd(0.05, momentum=0.9))
  opt = tx.init(q)
  p = q
  x = jax.random.normal(jax.random.key(1), (8, 6))

  @jax.jit
  def step(p, opt):  # the train step's hook order (steps.train_step)
    grads = jax.grad(lambda p: jnp.sum(jnp.tanh(
        x @ m.pre_forward(p, opt.method)['fc']['kernel']) ** 2))(p)
    updates, opt = tx.update(grads, opt, p)
    return m.post_update(optax.apply_updates(p, updates), opt.method), opt
  for _ in range(3):
    p, opt = step(p, opt)
  k2 = np.asarray(p['fc']['kernel'])
  np.testing.assert_array_equal(k2 == 0, w == 0)  # pruned stay exactly zero
  assert len(np.unique(k2[k2 != 0])) <= 4         # still 4 shared values
  assert not np.allclose(k2, k)                   # and they were trained
  slot = np.asarray(opt.method['slot']['fc']['kernel'])
  for s in range(4):  # every member of a slot holds that slot's value
    vals = k2[slot == s]
    assert len(vals) == 0 or np.all(vals == vals[0])


def test_centroid_inits():
  x = np.sort(np.array(jax.random.normal(jax.random.key(2), (500,))))
  rng = np.random.default_rng(0)
  lin = kmeans.init_centroids(x, 8, 'linear', rng)
  np.testing.assert_allclose(lin, np.linspace(x[0], x[-1], 8), rtol=1e-5)
  den = kmeans.init_centroids(x, 8, 'density', rng)
  assert np.all(np.diff(den) > 0) and x[0] <= den[0] and den[-1] <= x[-1]
  # Density puts centroids where the weights are: each holds ~1/8 of them.
  counts = np.bincount(kmeans.assign(x, den), minlength=8)
  assert counts.min() > 30
  # Linear spreads evenly over the range: the tails get centroids too.
  assert lin[0] < den[0] and lin[-1] > den[-1]
  pp = kmeans.init_centroids(x, 8, 'kmeans++', np.random.default_rng(3))
  assert set(pp) <= set(x) and len(set(pp)) == 8  # distinct data points
  pp2 = kmeans.init_centroids(x, 8, 'kmeans++', np.random.default_rng(3))
  np.testing.assert_array_equal(pp, pp2)
  with pytest.raises(ValueError):
    kmeans.init_centroids(x, 8, 'random', rng)
  # Lloyd: each point ends at its nearest centroid.
  c, idx = kmeans.kmeans1d(x, 4, 'kmeans++', 20, 0)
  np.testing.assert_array_equal(
      idx, np.argmin(np.abs(x[:, None] - c[None]), axis=1))


def test_pq_reconstructs_an_exact_product_quantized_matrix():
  rng = np.random.default_rng(0)
  books = rng.normal(size=(3, 4, 2)).astype(np.float32)   # M=3, K=4, d=2
  codes = np.stack([rng.permutation(np.arange(10) % 4) for _ in range(3)])
  w = pq._rebuild(books, codes)                           # [6, 10]
  b, c = pq.pq_kmeans(w, 2, 4, 10, seed=1)
  np.testing.assert_array_equal(pq._rebuild(b, c), w)
  enc = storage.encode_pq(w, 2)
  np.testing.assert_array_equal(storage.decode_pq(enc, w.shape), w)
  # 2-bit codes: 30 codes in 8 bytes, plus 24 fp32 codeword values.
  assert enc['codes'].nbytes == 8 and enc['codebooks'].size == 24


def test_pq_method_slots_rebuild_the_kernel_and_store_as_pq(tmp_path):
  cfg = ml_collections.ConfigDict(dict(
      include='fc', exclude='', sub_dim=4, bits=2, iterations=10, seed=0,
      grad='sum'))
  w = np.asarray(jax.random.normal(jax.random.key(6), (16, 12)))
  params = {'fc': {'kernel': w, 'bias': np.zeros(12, np.float32)}}
  m = pq.PQ(cfg)
  q = m.convert(params)
  state = m.init(q)
  slot, values = state['slot']['fc']['kernel'], state['values']['fc']['kernel']
  np.testing.assert_array_equal(np.asarray(values)[np.asarray(slot)],
                                q['fc']['kernel'])
  assert values.shape == (4 * 4 * 4 + 1,)  # M * K * d slots + the zero slot
  exp = m.export(q, state)
  path = str(tmp_path / 'pq.jxcz')
  sizes = storage.save(path, {'params': exp['params']}, exp['meta'], 'auto')
  loaded, _ = storage.load(path)
  np.testing.assert_array_equal(loaded['params']['fc']['kernel'],
                                exp['params']['fc']['kernel'])
  np.testing.assert_allclose(loaded['params']['fc']['kernel'],
                             q['fc']['kernel'], rtol=1e-6)
  assert sizes['params/fc/kernel'] == 4 * 4 * 4 * 4 + 4 * 12 * 2 // 8


def test_qcnn_lowers_the_output_error_below_pq():
  rng = np.random.default_rng(1)
  w = rng.normal(size=(16, 24))
  x = rng.normal(size=(200, 16)) * np.geomspace(5, 0.1, 16)  # anisotropic
  g = x.T @ x
  b, c = pq.pq_kmeans(w, 4, 4, 20, 0)
  b2, c2 = pq.qcnn(w, g, 4, 4, 10, 2, 0)
  assert pq.output_error(w, pq._rebuild(b2, c2), g) < \
      0.9 * pq.output_error(w, pq._rebuild(b, c), g)


def _bound(xf, s_x, w, s_w, contract):
  """Per output: s_x/2 sum|W| + s_w/2 sum|x| + s_x s_w/4 * n."""
  return (s_x / 2 * contract(jnp.ones_like(xf), jnp.abs(w)) +
          contract(jnp.abs(xf), jnp.ones_like(w) * s_w / 2) +
          contract(jnp.ones_like(xf), jnp.ones_like(w)) * s_x * s_w / 4)


def test_int8_conv_and_matmul_match_float_within_the_scale_bound():
  conv = nn.Conv(7, (3, 3), strides=2, padding='SAME', use_bias=False)
  dense = nn.Dense(6, use_bias=False)
  cv = lambda a, b: jax.lax.conv_general_dilated(
      a, b, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  def case(module, x, w, bits, contract):
    q, s = fixed_point.quantize_weight(w, bits)
    s_x = jnp.max(jnp.abs(x)) / 127
    got = fixed_point.int_layer(module, x, {
        'kernel_q': q, 'kernel_scale': s, 'act_scale': s_x,
        'act_bits': jnp.int8(8)})
    err = jnp.abs(got - contract(x, w))
    return err, _bound(x, s_x, w, s, contract), jnp.max(jnp.abs(q))

  @jax.jit
  def both(x, w, xd, wd):
    return case(conv, x, w, 8, cv), case(dense, xd, wd, 4, jnp.dot)
  args = (jax.random.normal(jax.random.key(0), (2, 9, 9, 5)),
          jax.random.normal(jax.random.key(1), (3, 3, 5, 7)) * 0.2,
          jax.random.normal(jax.random.key(2), (4, 30)),
          jax.random.normal(jax.random.key(3), (30, 6)))
  hlo = both.lower(*args).as_text()
  assert 'xi8>' in hlo and 'xi32>' in hlo  # int8 operands, int32 accumulator
  (err, bound, _), (err_d, bound_d, qmax_d) = both(*args)
  assert jnp.all(err <= bound + 1e-5) and float(jnp.max(err)) > 0
  assert jnp.all(err_d <= bound_d + 1e-5) and int(qmax_d) == 7  # int4 codes


class _Tiny(nn.Module):
  """Conv -> pool -> Dense -> Dense: the layer kinds of the registry's nets,
  small enough to compile in a moment."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.relu(nn.Conv(8, (3, 3), name='conv')(x))
    x = nn.avg_pool(x, (2, 2), (2, 2)).reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(32, name='fc')(x))
    return nn.Dense(10, name='out')(x)


@pytest.fixture(scope='module')
def tiny():
  model = _Tiny()
  x = jax.random.normal(jax.random.key(4), (6, 12, 12, 3))
  shapes = jax.eval_shape(lambda k: model.init(k, x), jax.random.key(5))
  rng = np.random.default_rng(0)  # He-scaled random weights, no compile

  def init(s):
    fan_in = int(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 0
    w = rng.standard_normal(s.shape) * (np.sqrt(2 / fan_in) if fan_in else .1)
    return w.astype(np.float32)
  return model, jax.tree.map(init, shapes['params']), x


def test_kmeans_artifact_is_bit_packed_and_round_trips(tiny, tmp_path):
  model, params, x = tiny
  params = jax.tree.map(np.array, params)
  fc = params['fc']['kernel']                          # [288, 32]
  fc[np.abs(fc) < np.quantile(np.abs(fc), 0.9)] = 0.0  # pruned: sparse_codebook
  m = kmeans.KMeansShare(_km_cfg(bits_conv=4, bits_fc=5))
  q = m.convert(params)
  exp = m.export(q, m.init(q))
  variables = {'params': jax.tree.map(np.asarray, exp['params'])}
  path = str(tmp_path / 'km.jxcz')
  sizes = storage.save(path, variables, exp['meta'], 'auto')
  loaded, _ = storage.load(path)
  fn = jax.jit(lambda v: apply.apply(model, v, x))
  np.testing.assert_array_equal(fn(loaded), fn(variables))
  # 4 bits per conv weight + a 16-entry codebook; 5 per FC weight + 32.
  assert sizes['params/conv/kernel'] <= 216 * 4 // 8 + 16 * 4
  assert sizes['params/out/kernel'] <= 320 * 5 // 8 + 32 * 4
  # 10% survivors: 8-bit gaps + 5-bit indices, not 6 bits for all 9,216.
  assert sizes['params/fc/kernel'] < 922 * 13 / 8 * 1.1 + 32 * 4 + 8


def test_int4_artifact_round_trips_through_the_integer_path(tiny, tmp_path):
  model, params, x = tiny
  cfg = ml_collections.ConfigDict(dict(
      include='.*', exclude='', weight_bits=4, act_bits=8, calib_batches=1,
      act_percentile=100.0))
  m = fixed_point.Int8(cfg)
  m.set_calibration(model, np.asarray(x), {})
  exp = m.export(params, m.init(params))
  variables = {'params': exp['params']}
  path = str(tmp_path / 'int4.jxcz')
  sizes = storage.save(path, variables, exp['meta'], 'auto')
  assert sizes['params/fc/kernel_q'] == 9216 // 2 + 1  # two per byte (+nbits)
  loaded, _ = storage.load(path)
  assert loaded['params']['fc']['kernel_q'].dtype == np.int8
  fn = jax.jit(lambda v: apply.apply(model, v, x))
  got = fn(loaded)
  np.testing.assert_array_equal(got, fn(variables))
  ref = apply.apply(model, {'params': params}, x)
  assert float(jnp.linalg.norm(got - ref)) < 0.25 * float(
      jnp.linalg.norm(ref))


def test_registered_and_bad_config_is_rejected():
  for name in ('kmeans', 'pq', 'qcnn', 'int8', 'qat'):
    assert name in base.list_methods()
  m = kmeans.KMeansShare(_km_cfg(init='uniform'))
  with pytest.raises(ValueError, match='kmeans.init'):
    m.convert({'d': {'kernel': jnp.ones((3, 2))}})
