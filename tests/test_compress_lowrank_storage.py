"""Low-rank error = discarded singular values; artifacts round-trip exactly."""
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxcnn import models
from jaxcnn.compress import apply, lowrank, prune, storage


def _svd_cfg(**kw):
  c = ml_collections.ConfigDict(dict(include='.*', conv_include='', rank=0,
                                     param_ratio=0.0, energy=0.0))
  c.update(kw)
  return c


def test_dense_svd_error_is_the_discarded_singular_values():
  w = np.asarray(jax.random.normal(jax.random.key(0), (12, 8)))
  u, v, s = lowrank.factor_dense(w, 3)
  assert u.shape == (12, 3) and v.shape == (3, 8)
  np.testing.assert_allclose(np.linalg.norm(w - u @ v),
                             np.sqrt(np.sum(s[3:] ** 2)), rtol=1e-5)


def test_conv_separable_error_and_forward():
  k = np.asarray(jax.random.normal(jax.random.key(1), (3, 3, 4, 5)))
  vk, hk, s = lowrank.factor_conv(k, 2)
  rebuilt = lowrank.rebuild({'v_kernel': vk, 'h_kernel': hk})['kernel']
  np.testing.assert_allclose(np.linalg.norm(k - rebuilt),
                             np.sqrt(np.sum(s[2:] ** 2)), rtol=1e-5)
  # The two-conv forward equals the conv of the rebuilt kernel.
  import flax.linen as nn
  conv = nn.Conv(5, (3, 3), padding='SAME')
  x = jax.random.normal(jax.random.key(2), (2, 7, 7, 4))
  want = conv.apply({'params': {'kernel': rebuilt, 'bias': jnp.zeros(5)}}, x)
  got = apply._conv(conv, x, {'v_kernel': vk, 'h_kernel': hk,
                              'bias': jnp.zeros(5)}, None, 'c')
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('kw,rank', [(dict(rank=2), 2),
                                     (dict(param_ratio=0.9), 3),
                                     (dict(energy=1.0), 6)])
def test_rank_choice(kw, rank):
  s = np.array([4., 2., 1., .5, .25, .1])
  assert lowrank.choose_rank(s, 8, 6, _svd_cfg(**kw)) == rank


@pytest.mark.parametrize('bits', [4, 8])
def test_relative_index_encoding_with_fillers(bits):
  w = np.zeros((40, 30), np.float32)
  w[0, 0], w[0, 7], w[39, 29], w[20, 3] = 1.5, -2.0, 3.25, 0.125  # long gaps
  enc = storage.encode_relative(w, bits)
  assert int(enc['count'][0]) > 4  # filler entries were needed
  np.testing.assert_array_equal(storage.decode_relative(enc, w.shape, bits), w)
  csr = storage.encode_csr(w)
  np.testing.assert_array_equal(storage.decode_csr(csr, w.shape), w)


def test_artifact_round_trip_identical_logits(tmp_path):
  model = models.get_model('lenet5')
  x = jax.random.normal(jax.random.key(0), (3, 32, 32, 1))
  params = model.init(jax.random.key(1), x)['params']
  cfg = ml_collections.ConfigDict(dict(
      include='.*', exclude='', scope='global', sparsity=0.9,
      schedule='one_shot', initial_sparsity=0.0, begin_step=0, end_step=0,
      frequency=1, rounds=1, l1=0.0, group_lasso=0.0))
  pruned = prune.MagnitudePrune(cfg)
  sparse = pruned.export(params, pruned.oneshot(params))['params']
  svd = lowrank.SVD(_svd_cfg(include='F6', conv_include='C3', rank=4))
  factored = svd.convert(params)
  fwd = jax.jit(lambda v: apply.apply(model, v, x))  # eager is slow on CPU
  for name, p, enc in (('sparse', sparse, 'auto'), ('csr', sparse, 'csr'),
                       ('rel4', sparse, 'relative'),
                       ('factored', factored, 'dense')):
    variables = {'params': jax.tree.map(np.asarray, p)}
    path = str(tmp_path / f'{name}.jxcz')
    sizes = storage.save(path, variables, {'model': 'lenet5'}, enc,
                         4 if name == 'rel4' else 8)
    loaded, meta = storage.load(path)
    assert meta == {'model': 'lenet5'}
    chex.assert_trees_all_equal(loaded, variables)
    np.testing.assert_array_equal(fwd(loaded), fwd(variables))
    if name != 'factored':  # 10% nonzeros: well under a quarter of fp32
      assert sizes['file'] < 0.25 * 61706 * 4
  # The factorized net computes the rebuilt dense net's function.
  np.testing.assert_allclose(
      fwd({'params': factored}),
      model.apply({'params': svd.pre_forward(factored, None)}, x),
      rtol=1e-4, atol=1e-5)
