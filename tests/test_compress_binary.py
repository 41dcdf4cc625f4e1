"""Binary nets: STE gradients, stochastic binarisation, BWN scales, bit-packed
XNOR/popcount layers against the float +-1 simulation, the 'binary' artifact
encoding and the BNN models."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxcnn import models
from jaxcnn.compress import binary, bitpack, storage
from jaxcnn.models import binary as bm


def _cfg(**kw):
  b = ml_collections.ConfigDict(dict(
      include='.*', exclude='', stochastic=False, seed=0, clip=True,
      act_bits=1, act_center=True))
  b.update(kw)
  return ml_collections.ConfigDict({'method': 'binary', 'binary': b})


def test_sign_ste_forward_and_htanh_gradient():
  x = jnp.array([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5])
  np.testing.assert_array_equal(bm.sign_ste(x), [-1, -1, -1, 1, 1, 1, 1])
  g = jax.grad(lambda v: jnp.sum(bm.sign_ste(v) * jnp.arange(7.0)))(x)
  np.testing.assert_array_equal(g, [0, 1, 2, 3, 4, 5, 0])


def test_k_bit_activations_levels_and_gradient():
  x = jnp.linspace(-1.5, 1.5, 31)
  q = bm.quantize_act(x, 2)
  np.testing.assert_allclose(np.unique(np.asarray(q)), [-1, -1 / 3, 1 / 3, 1],
                             atol=1e-6)
  g = jax.grad(lambda v: jnp.sum(bm.quantize_act(v, 2)))(x)
  np.testing.assert_array_equal(g, (np.abs(np.asarray(x)) <= 1).astype(float))
  with pytest.raises(ValueError, match='1..4'):
    bm.quantize_act(x, 5)


def test_stochastic_binarisation_frequencies():
  w = jnp.repeat(jnp.array([-1.0, -0.5, 0.0, 0.6, 2.0]), 20000)
  b = binary.stochastic_sign(w, jax.random.key(3))
  assert set(np.unique(np.asarray(b))) == {-1.0, 1.0}
  freq = np.asarray(b == 1).reshape(5, -1).mean(1)
  np.testing.assert_allclose(freq, [0.0, 0.25, 0.5, 0.8, 1.0], atol=0.015)
  g = jax.grad(lambda v: jnp.sum(binary.stochastic_sign(
      v, jax.random.key(0))))(jnp.array([-2.0, 0.3, 1.5]))
  np.testing.assert_array_equal(g, [0, 1, 0])


def test_binaryconnect_method_hooks():
  params = {'a': {'kernel': jnp.array([[0.5, -2.0], [0.0, 3.0]]),
                  'bias': jnp.array([0.2, -0.7])},
            'b': {'kernel': jnp.array([[-0.1], [4.0]])}}
  m = binary.BinaryConnect(_cfg(include='^a/'))
  state = m.init(params)
  fwd = m.pre_forward(params, state)
  np.testing.assert_array_equal(fwd['a']['kernel'], [[1, -1], [1, 1]])
  np.testing.assert_array_equal(fwd['a']['bias'], params['a']['bias'])
  np.testing.assert_array_equal(fwd['b']['kernel'], params['b']['kernel'])
  clipped = m.post_update(params, state)
  np.testing.assert_array_equal(clipped['a']['kernel'], [[0.5, -1], [0, 1]])
  np.testing.assert_array_equal(clipped['b']['kernel'], params['b']['kernel'])
  with pytest.raises(ValueError, match='matches no kernel'):
    binary.BinaryConnect(_cfg(include='nothing')).init(params)
  # Stochastic: the update count in the method state picks the draw.
  s = binary.BinaryConnect(_cfg(stochastic=True, include='^a/'))
  st = s.init(params)
  big = {'a': {'kernel': jnp.zeros((64, 64))}}
  d0 = s.pre_forward(big, st)['a']['kernel']
  d0b = s.pre_forward(big, st)['a']['kernel']
  d1 = s.pre_forward(big, s.update_state(st, big, jnp.int32(1)))['a']['kernel']
  np.testing.assert_array_equal(d0, d0b)
  assert not np.array_equal(d0, d1)


def test_bwn_alpha_per_filter_exact():
  k = np.arange(24, dtype=np.float32).reshape(2, 2, 2, 3) / 7.0 - 1.5
  m = binary.BWN(_cfg())
  out = np.asarray(m.eval_params({'c': {'kernel': jnp.asarray(k)}})['c'][
      'kernel'])
  alpha = np.abs(k).reshape(-1, 3).mean(0)
  want = np.where(k >= 0, 1.0, -1.0) * alpha
  np.testing.assert_allclose(out, want, rtol=1e-6)
  np.testing.assert_allclose(np.abs(out).reshape(-1, 3), np.broadcast_to(
      alpha, (8, 3)), rtol=1e-6)


def test_pack_numpy_equals_jax():
  bits = np.random.default_rng(0).random((3, 75)) < 0.5
  np.testing.assert_array_equal(bitpack.pack_np(bits),
                                np.asarray(bitpack.pack(jnp.asarray(bits))))
  np.testing.assert_array_equal(bitpack.unpack_np(bitpack.pack_np(bits), 75),
                                bits)


def _pm1(key, shape):
  return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0)


def test_packed_dense_equals_float_simulation():
  kx, kw = jax.random.split(jax.random.key(1))
  x, w = _pm1(kx, (5, 75)), jax.random.normal(kw, (75, 7))
  words, n = bitpack.pack_kernel(w)
  got = jax.jit(bitpack.packed_dense, static_argnums=2)(x, words, n)
  want = x @ bm.binarize(w)
  assert got.dtype == jnp.int32
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize('padding,stride', [('SAME', 1), ('VALID', 2),
                                            ('SAME', 2)])
def test_packed_conv_equals_float_simulation(padding, stride):
  kx, kw = jax.random.split(jax.random.key(2))
  x, w = _pm1(kx, (2, 7, 6, 5)), jax.random.normal(kw, (3, 3, 5, 4))
  words, _ = bitpack.pack_kernel(w)
  fn = jax.jit(functools.partial(bitpack.packed_conv, kernel_hw=(3, 3),
                                 strides=(stride, stride), padding=padding))
  got = fn(x, words)
  want = jax.lax.conv_general_dilated(
      x, bm.binarize(w), (stride, stride), padding,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def _tiny_bnn():
  model = models.get_model('bnn_lenet5', features=(4, 8, 16), hidden=8,
                           scale=True)
  x = jax.random.normal(jax.random.key(0), (3, 32, 32, 1))
  v = jax.jit(model.init)(jax.random.key(1), x)
  return model, v, x


def test_bnn_forward_grad_and_packed_inference_equal():
  model, v, x = _tiny_bnn()
  packed = bitpack.packed_weights(model, v, x)
  assert sorted(packed) == ['C3', 'C5', 'F6']

  def loss(p):
    out, _ = model.apply({**v, 'params': p}, x, train=True,
                         mutable=['batch_stats'])
    return jnp.sum(out ** 2)

  @jax.jit  # one compile for the gradient and both inference paths
  def run(v, x, packed):
    return (jax.grad(loss)(v['params']), model.apply(v, x),
            bitpack.apply_packed(model, v, x, packed))
  g, logits, got = run(v, x, packed)
  assert jax.tree.map(jnp.shape, g) == jax.tree.map(jnp.shape, v['params'])
  assert all(np.all(np.isfinite(l)) for l in jax.tree.leaves(g))
  assert float(jnp.abs(g['C3']['kernel']).sum()) > 0  # the STE passes grads
  assert logits.shape == (3, 10)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(logits))


def test_other_binary_models_shapes():
  x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  for name, kw in (('bnn_resnet_cifar', dict(stages=(4, 8), hidden=8)),
                   ('bnn_mlp', dict(hidden=(16, 8), act_bits=2)),
                   ('xnor_cifar', dict(stages=(4, 8), hidden=8))):
    model = models.get_model(name, **kw)
    v = jax.eval_shape(model.init, jax.random.key(0), x)
    out, _ = jax.eval_shape(functools.partial(
        model.apply, train=True, mutable=['batch_stats']), v, x)
    assert out.shape == (2, 10)
    if name == 'bnn_resnet_cifar':  # a BinaryResidualUnit: BN + BinConv
      assert set(v['params']['s2c2']) == {'bn', 'conv'}


def test_binary_artifact_round_trip(tmp_path):
  model, v, x = _tiny_bnn()
  m = binary.BWN(_cfg(include='^(C3|C5|F6)/kernel$'))
  exp = m.export(v['params'], m.init(v['params']))
  variables = {'params': jax.tree.map(np.asarray, exp['params']),
               'batch_stats': jax.tree.map(np.asarray, v['batch_stats'])}
  path = str(tmp_path / 'm.jxcz')
  nbytes = storage.save(path, variables, exp['meta'], 'binary')
  loaded, meta = storage.load(path)
  assert meta['binary_scale'] == 'filter'
  fn = jax.jit(lambda v, x: model.apply(v, x))
  np.testing.assert_array_equal(np.asarray(fn(loaded, x)),
                                np.asarray(fn(variables, x)))
  k = variables['params']['C5']['kernel']     # 5*5*8 x 16
  assert nbytes['params/C5/kernel'] == 16 * (7 * 4 + 4)   # bits + alpha
  assert nbytes['params/C1/kernel'] == variables['params']['C1'][
      'kernel'].nbytes   # the float first layer stays dense
  assert k.size * 4 / nbytes['params/C5/kernel'] > 20
  signs = {'params': {'k': np.where(k >= 0, 1.0, -1.0).astype(np.float32)}}
  storage.save(path, signs, {}, 'binary')      # +-1: the bits alone
  assert storage.load(path)[0]['params']['k'].tobytes() == signs['params'][
      'k'].tobytes()
  assert storage.encode_leaf(signs['params']['k'], 'binary', 8)[1].keys() \
      == {'bits'}


def test_xnor_input_binarisation_and_wrapper():
  x = jax.random.uniform(jax.random.key(0), (2, 4, 4, 3))  # like post-ReLU
  y = np.asarray(binary.binarize_input(x))
  centered = np.asarray(x - x.mean(axis=(1, 2), keepdims=True))
  beta = np.abs(centered).reshape(2, -1).mean(1)
  np.testing.assert_allclose(np.abs(y).reshape(2, -1),
                             np.broadcast_to(beta[:, None], (2, 48)),
                             rtol=1e-6)
  np.testing.assert_array_equal(np.sign(y), np.where(centered >= 0, 1, -1))
  model = models.get_model('simple_cnn', features=(4, 4), hidden=8)
  img = jnp.ones((2, 8, 8, 3)) * jnp.arange(8.0)[None, :, None, None]
  v = jax.jit(model.init)(jax.random.key(0), img)
  meta = binary.XNOR(_cfg(include='^(conv2|fc1)/kernel$')).export(
      v['params'], {})['meta']
  wrapped = binary.inference_model(model, meta)
  a, b, c = jax.jit(lambda v, x: (
      wrapped.apply(v, x), model.apply(v, x),
      binary.apply_any(wrapped, v, x)))(v, img)
  assert a.shape == b.shape and not np.allclose(a, b)
  # Under apply.py's own interceptor (artifact inference) the binarisation
  # still happens.
  np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-5)
  assert binary.inference_model(model, {}) is model
