"""Model zoo: exact parameter counts, forward shapes, BatchNorm and dropout
modes, initialisers, layer options and the MAC counter."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import get_model, list_models
from jaxcnn.models.flops import count_macs, layer_stats, param_count, summary
from jaxcnn.models.shufflenet import channel_shuffle

# name -> (input HWC, params-collection count with the default 10 classes
# except alexnet_imagenet's 1000).
EXPECTED = {
    'lenet5': ((32, 32, 1), 61_706),
    # 61,706 + the trainable S2/S4 coefficients and biases (12 + 32).
    'lenet5_classic': ((32, 32, 1), 61_750),
    # The masked C3 kernel is stored dense: 900 of its entries are always
    # zeroed, so 60,850 parameters are effective.
    'lenet5_classic_sparse': ((32, 32, 1), 61_750),
    'simple_cnn': ((32, 32, 3), 545_098),
    'cifar10_tutorial': ((24, 24, 3), 1_068_298),
    'cifar10_tutorial_local': ((24, 24, 3), 2_112_970),
    'alexnet_imagenet': ((227, 227, 3), 60_965_224),
    'alexnet_cifar_paddle': ((32, 32, 3), 21_622_154),
    'alexnet_cifar_paddle_nolrn': ((32, 32, 3), 21_622_154),
    'alexnet_cifar': ((32, 32, 3), 7_706_442),
    'alexnet_cifar_nolrn': ((32, 32, 3), 7_706_442),
    'mobilenet_v2_cifar': ((32, 32, 3), 2_236_682),
    'shufflenet_v2_cifar': ((32, 32, 3), 1_263_854),
    'resnet20_cifar': ((32, 32, 3), 269_722),
    # 784-800-800-10 etc.: 784*800+800 + 800*800+800 + 800*10+10.
    'mlp': ((28, 28, 1), 1_276_810),
    'mlp_large': ((28, 28, 1), 2_395_210),
    'mlp_small': ((28, 28, 1), 55_050),
    # Binary nets (regression counts; BatchNorm scale/bias included). Their
    # forward and gradients are tested in test_compress_binary.py.
    'bnn_lenet5': ((32, 32, 1), 530_954),
    'bnn_mlp': ((28, 28, 1), 2_917_386),
    'bnn_cifar': ((32, 32, 3), 3_257_354),
    'bnn_resnet_cifar': ((32, 32, 3), 3_257_354),
    'xnor_cifar': ((32, 32, 3), 3_257_354),
}
BN_MODELS = ('resnet20_cifar', 'shufflenet_v2_cifar', 'mobilenet_v2_cifar')
BINARY_MODELS = ('bnn_lenet5', 'bnn_mlp', 'bnn_cifar', 'bnn_resnet_cifar',
                 'xnor_cifar')


def _abstract_vars(model, hwc, batch=1):
  return jax.eval_shape(model.init, jax.random.key(0),
                        jnp.zeros((batch, *hwc), jnp.float32))


def _n_params(name, hwc, **overrides):
  variables = _abstract_vars(get_model(name, **overrides), hwc)
  return param_count(variables['params'])


def _cheap_variables(model, x):
  """Variables with init's structure, filled from numpy.

  Real `init` compiles the RNG code of every initialiser, which costs up to
  25 s per network on a 2-core CPU; the forward-pass tests only need sane
  values: LeCun-scaled normal kernels, unit BN scales and variances. (The
  tutorial-initialiser test runs a real init.)
  """
  rng = np.random.default_rng(0)
  def fill(path, leaf):
    name = str(getattr(path[-1], 'key', path[-1]))
    if name in ('scale', 'var'):
      return jnp.ones(leaf.shape, leaf.dtype)
    if name == 'mean':
      return jnp.zeros(leaf.shape, leaf.dtype)
    if name == 'kernel':
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in),
                         leaf.dtype)
    return jnp.full(leaf.shape, 0.01, leaf.dtype)  # biases, means, slopes
  return jax.tree_util.tree_map_with_path(
      fill, jax.eval_shape(model.init, jax.random.key(0), x))


def _x(hwc, batch=2, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, *hwc), jnp.float32)


def test_every_registered_model_has_a_stated_count():
  assert sorted(EXPECTED) == list_models()


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_parameter_count(name):
  hwc, want = EXPECTED[name]
  assert _n_params(name, hwc) == want


@pytest.mark.parametrize('name,hwc,overrides,want', [
    ('alexnet_imagenet', (227, 227, 3), {'groups': 1}, 62_378_344),
    ('alexnet_cifar', (24, 24, 3), {}, 5_871_434),
    ('resnet20_cifar', (32, 32, 3), {'shortcut': 'B'}, 272_474),
    ('resnet20_cifar', (32, 32, 3), {'depth': 56}, 853_018),
    ('mobilenet_v2_cifar', (32, 32, 3), {'width_multiplier': 0.5}, 700_490),
    ('shufflenet_v2_cifar', (32, 32, 3), {'width': 0.5}, 352_042),
    # PReLU adds one slope per channel of each activated layer.
    ('simple_cnn', (32, 32, 3), {'activation': 'prelu'},
     545_098 + 32 + 64 + 128),
])
def test_parameter_count_variants(name, hwc, overrides, want):
  assert _n_params(name, hwc, **overrides) == want


# BN models are run in test_batchnorm_train_vs_eval, alexnet_imagenet below.
@pytest.mark.parametrize(
    'name', sorted(set(EXPECTED) - {'alexnet_imagenet', *BN_MODELS,
                                    *BINARY_MODELS}))
def test_forward_shape_and_finite(name):
  hwc, _ = EXPECTED[name]
  model = get_model(name)
  x = _x(hwc)
  logits = jax.jit(model.apply)(_cheap_variables(model, x), x)
  chex.assert_shape(logits, (2, 10))
  chex.assert_tree_all_finite(logits)


def test_alexnet_imagenet_output_shape():
  model = get_model('alexnet_imagenet')
  variables = _abstract_vars(model, (227, 227, 3))
  out = jax.eval_shape(model.apply, variables, jnp.zeros((2, 227, 227, 3)))
  assert out.shape == (2, 1000)
  shapes = {s.path: s.output_shape for s in layer_stats(model, (227, 227, 3))}
  assert shapes['conv1'] == (55, 55, 96)
  assert shapes['conv2'] == (27, 27, 256) and shapes['conv5'] == (13, 13, 256)
  kernels = jax.tree.map(lambda a: a.shape, variables['params'])
  assert kernels['conv2']['kernel'] == (5, 5, 48, 256)   # per-GPU half
  assert kernels['conv3']['kernel'] == (3, 3, 256, 384)  # sees both GPUs


def test_paddle_alexnet_collapses_to_1x1():
  stats = layer_stats(get_model('alexnet_cifar_paddle'), (32, 32, 3))
  shapes = {s.path: s.output_shape for s in stats}
  assert shapes['conv1'] == (6, 6, 96)
  assert shapes['conv2'] == (3, 3, 256)
  assert shapes['conv3'] == (1, 1, 384) and shapes['conv5'] == (1, 1, 256)


@pytest.mark.parametrize('name', BN_MODELS)
def test_batchnorm_train_vs_eval(name):
  model = get_model(name)
  x = _x((32, 32, 3), batch=4, seed=1)
  variables = _cheap_variables(model, x)
  params, stats = variables['params'], variables['batch_stats']

  @jax.jit
  def train_step(stats):
    return model.apply({'params': params, 'batch_stats': stats}, x,
                       train=True, mutable=['batch_stats'])

  @jax.jit
  def eval_step(stats):
    return model.apply({'params': params, 'batch_stats': stats}, x,
                       train=False, mutable=['batch_stats'])

  y_train, upd1 = train_step(stats)
  y_eval, upd_eval = eval_step(stats)
  for y in (y_train, y_eval):
    chex.assert_shape(y, (4, 10))
    chex.assert_tree_all_finite(y)
  # Eval reads the running averages and never writes them.
  chex.assert_trees_all_equal(upd_eval['batch_stats'], stats)
  assert not np.allclose(y_train, y_eval, atol=1e-4)
  # Train writes them, with momentum 0.9: from mean 0, two updates on the same
  # batch give 0.1*m and then 0.9*0.1*m + 0.1*m = 0.19*m.
  _, upd2 = train_step(upd1['batch_stats'])
  m1 = jax.tree.leaves(upd1['batch_stats'])[0]  # a BN's running mean
  m2 = jax.tree.leaves(upd2['batch_stats'])[0]
  first = jax.tree.leaves(stats)[0]
  assert np.allclose(first, 0) and not np.allclose(m1, 0)
  np.testing.assert_allclose(m2, 1.9 * m1, rtol=1e-4, atol=1e-6)


def test_dropout_only_in_train_mode():
  model = get_model('alexnet_cifar')
  x = _x((24, 24, 3))
  variables = _cheap_variables(model, x)
  apply = jax.jit(model.apply, static_argnames='train')
  a = apply(variables, x, train=False)
  b = apply(variables, x, train=False)  # no dropout RNG needed
  chex.assert_trees_all_equal(a, b)
  t1 = apply(variables, x, train=True, rngs={'dropout': jax.random.key(1)})
  t2 = apply(variables, x, train=True, rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(t1, t2)
  with pytest.raises(Exception):
    model.apply(variables, x, train=True)  # train needs a 'dropout' RNG


def test_tutorial_initialisers_and_names():
  model = get_model('cifar10_tutorial')
  params = jax.jit(model.init)(jax.random.key(0), _x((24, 24, 3), 1))['params']
  assert set(params) == {'conv1', 'conv2', 'local3', 'local4', 'softmax_linear'}
  for name, std, bias in [('conv1', 5e-2, 0.0), ('conv2', 5e-2, 0.1),
                          ('local3', 0.04, 0.1), ('local4', 0.04, 0.1),
                          ('softmax_linear', 1 / 192, 0.0)]:
    k = np.asarray(params[name]['kernel'])
    assert np.all(params[name]['bias'] == np.float32(bias)), name
    # TF truncated_normal: |w| <= 2 stddev, and the truncated std is 0.88 sd.
    assert np.abs(k).max() <= 2 * std * (1 + 1e-6), name
    if k.size > 1000:
      np.testing.assert_allclose(k.std(), 0.8796 * std, rtol=0.05)


def test_alexnet_lrn_options():
  x = _x((32, 32, 3))
  base = get_model('alexnet_cifar')
  variables = _cheap_variables(base, x)
  outs = {}
  for key, overrides in [('paper', {}),
                         ('tutorial', {'lrn_before_pool': False}),
                         ('nolrn', {'use_lrn': False})]:
    model = get_model('alexnet_cifar', **overrides)
    outs[key] = jax.jit(model.apply)(variables, x)  # same parameters
  assert not np.allclose(outs['paper'], outs['tutorial'])
  assert not np.allclose(outs['paper'], outs['nolrn'])
  assert [s.kind for s in layer_stats(base, (32, 32, 3))].count('LRN') == 2
  assert 'LRN' not in [s.kind for s in layer_stats(
      get_model('alexnet_cifar_nolrn'), (32, 32, 3))]


def test_mac_counts():
  tutorial = count_macs(get_model('cifar10_tutorial'), (24, 24, 3))
  # conv1 2,764,800 + conv2 14,745,600 + fc 960,384. The tutorial quotes
  # "about 19.5M"; the exact conv+fc count is 5% lower.
  assert tutorial == 18_470_784
  assert abs(tutorial - 19.5e6) / 19.5e6 < 0.06
  assert count_macs(get_model('resnet20_cifar'), (32, 32, 3)) == 40_551_040
  grouped = count_macs(get_model('alexnet_imagenet'), (227, 227, 3))
  full = count_macs(get_model('alexnet_imagenet', groups=1), (227, 227, 3))
  assert grouped == 724_406_816 and full == 1_135_256_096
  # Per image, whatever the batch.
  assert count_macs(get_model('lenet5'), (4, 32, 32, 1)) == count_macs(
      get_model('lenet5'), (32, 32, 1))


def test_summary_and_param_count():
  text = summary(get_model('resnet20_cifar'), (32, 32, 3))
  assert '269,722 params' in text and '40,551,040 MACs' in text
  assert 'stage3_3/conv2/bn' in text
  assert param_count({'a': jnp.zeros((3, 4)), 'b': [jnp.zeros(5)]}) == 17


def test_channel_shuffle_interleaves_groups():
  x = jnp.arange(8.0).reshape(1, 1, 1, 8)
  np.testing.assert_array_equal(channel_shuffle(x)[0, 0, 0],
                                [0, 4, 1, 5, 2, 6, 3, 7])


def test_registry_overrides_reach_every_model():
  # Overrides reach every registered constructor (configs rely on this).
  for name in list_models():
    assert isinstance(get_model(name, num_classes=7), nn.Module)
