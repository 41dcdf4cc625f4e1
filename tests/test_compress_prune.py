"""Pruning on tiny exact trees: masks, schedules, optimizer interplay, and
the structured pruner against the masked original."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxcnn.compress import apply, base, prune, structured
from jaxcnn.models.layers import LRN


def _cfg(**kw):
  c = ml_collections.ConfigDict(dict(
      include='.*', exclude='', scope='layer', sparsity=0.5,
      schedule='gradual', initial_sparsity=0.0, begin_step=0, end_step=10,
      frequency=2, rounds=2, l1=0.0, group_lasso=0.0))
  c.update(kw)
  return c


TREE = {'a': {'kernel': jnp.array([[0.1, -3.0], [2.0, -0.2]]),
              'bias': jnp.array([0.05, 0.0])},
        'b': {'kernel': jnp.array([1.0, -0.5, 0.25, 4.0])}}


def test_layer_masks_are_exact():
  m = prune.magnitude_masks(TREE, base.select(TREE, '.*'), 0.5, 'layer')
  chex.assert_trees_all_equal(m, {
      'a': {'kernel': jnp.array([[0., 1.], [1., 0.]]), 'bias': jnp.ones(())},
      'b': {'kernel': jnp.array([1., 0., 0., 1.])}})


def test_global_masks_use_one_threshold():
  # |w| sorted: 0.1 0.2 0.25 0.5 | 1 2 3 4: the four smallest go, wherever.
  m = prune.magnitude_masks(TREE, base.select(TREE, '.*'), 0.5, 'global')
  chex.assert_trees_all_equal(m['a']['kernel'], jnp.array([[0., 1.], [1., 0.]]))
  chex.assert_trees_all_equal(m['b']['kernel'], jnp.array([1., 0., 0., 1.]))
  only_b = prune.magnitude_masks(TREE, base.select(TREE, '^b/'), 0.75, 'layer')
  chex.assert_trees_all_equal(only_b['a']['kernel'], jnp.ones(()))
  chex.assert_trees_all_equal(only_b['b']['kernel'], jnp.array([0., 0., 0., 1.]))


@pytest.mark.parametrize('schedule,want', [
    ('one_shot', [0.5] * 12),
    # Two rounds over steps 0..10 (period 5); each keeps sqrt(0.5) of the rest.
    ('iterative', [1 - 0.5 ** 0.5] * 5 + [0.5] * 7),
    # s_f (1 - (1 - t/10)^3), held between updates every 2 steps.
    ('gradual', [0.5 * (1 - (1 - min(2 * (t // 2), 10) / 10) ** 3)
                 for t in range(12)]),
])
def test_schedules(schedule, want):
  cfg = _cfg(schedule=schedule, begin_step=0, end_step=10)
  got = [float(prune.target_sparsity(cfg, t)) for t in range(12)]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  updates = [t for t in range(12) if prune.is_update_step(cfg, t)]
  assert updates == {'one_shot': [0], 'iterative': [0, 5],
                     'gradual': [0, 2, 4, 6, 8, 10]}[schedule]


def _train(method, params, steps, lr=0.1):
  """`steps` momentum-SGD updates with random grads, hooks as in train_step."""
  tx = method.wrap_tx(optax.sgd(lr, momentum=0.9))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, key):
    fwd = method.pre_forward(params, opt.method)
    grads = jax.tree.map(lambda w: jax.random.normal(key, w.shape), fwd)
    updates, opt = tx.update(grads, opt, params)
    params = method.post_update(optax.apply_updates(params, updates),
                                opt.method)
    return params, opt
  for i in range(steps):
    params, opt = step(params, opt, jax.random.key(i))
  return params, opt


def test_gradual_hits_target_and_pruned_weights_stay_zero():
  params = {'d': {'kernel': jax.random.normal(jax.random.key(0), (10, 10)),
                  'bias': jnp.ones(10)}}
  method = prune.MagnitudePrune(_cfg(sparsity=0.8, end_step=6, frequency=2))
  params, opt = _train(method, params, 6)
  k = params['d']['kernel']
  assert int(jnp.sum(k == 0)) == 80           # floor(0.8 * 100), exactly
  chex.assert_trees_all_equal(opt.method['masks']['d']['kernel'] == 0, k == 0)
  zeros = k == 0
  # More steps with a large lr: what was pruned stays exactly zero.
  method2 = prune.MagnitudePrune(_cfg(sparsity=0.8, schedule='one_shot'))
  p, _ = _train(method2, params, 5, lr=1.0)
  assert bool(jnp.all(p['d']['kernel'][zeros] == 0))
  assert bool(jnp.all(p['d']['bias'] != 1.0))  # unselected leaves do train


def test_regularisers():
  sel = base.select(TREE, '.*')
  l1 = prune.sparsity_penalty(TREE, sel, 1.0, 0.0)
  np.testing.assert_allclose(l1, 0.1 + 3 + 2 + 0.2 + 1 + 0.5 + 0.25 + 4,
                             rtol=1e-6)
  gl = prune.sparsity_penalty(TREE, sel, 0.0, 1.0)
  # Groups are output units (last axis): columns of a, each entry of 1-D b.
  want = np.hypot(0.1, 2.0) + np.hypot(3.0, 0.2) + 1 + 0.5 + 0.25 + 4
  np.testing.assert_allclose(gl, want, rtol=1e-5)


class TinyNet(nn.Module):
  """conv -> LRN -> pool -> conv -> BN -> flatten -> dense -> dense."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(8, (3, 3), padding='SAME', name='conv1')(x))
    x = LRN(depth_radius=2, bias=1.0, alpha=0.3, beta=0.75, name='norm1')(x)
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.Conv(6, (3, 3), padding='SAME', name='conv2')(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, name='bn2')(x))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(5, name='fc')(x))
    return nn.Dense(3, name='out')(x)


def test_structured_pruner_matches_masked_original():
  model = TinyNet()
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 2))
  v = model.init(jax.random.key(0), x)
  bs = jax.tree.map(lambda s: s + 0.3, v['batch_stats'])  # non-trivial stats
  graph = structured.Graph(model, (8, 8, 2))
  assert [l.path for l in graph.layers if l.ok] == ['conv1', 'conv2']
  assert graph.by_path['conv1'].lrns == ['norm1']
  assert graph.by_path['conv2'].bns == ['bn2']
  method = prune.FilterPrune(ml_collections.ConfigDict(dict(
      include='conv', exclude='', ratio=0.5, norm='l2')))
  method.bind(graph)
  state = method.init(v['params'])
  masked = method.pre_forward(v['params'], state)
  want = model.apply({'params': masked, 'batch_stats': bs}, x)
  exp = method.export(v['params'], state)
  assert {k: len(i) for k, i in exp['keep'].items()} == {'conv1': 4,
                                                         'conv2': 3}
  p, b, extra = structured.compact(graph, exp['params'], bs, exp['keep'])
  assert p['conv1']['kernel'].shape == (3, 3, 2, 4)
  assert p['conv2']['kernel'].shape == (3, 3, 4, 3)
  assert p['fc']['kernel'].shape == (4 * 4 * 3, 5)
  assert b['bn2']['mean'].shape == (3,)
  fwd = jax.jit(lambda v: apply.apply(model, v, x))  # eager is slow on CPU
  got = fwd({'params': p, 'batch_stats': b, 'compress': extra})
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # A plain LRN over the surviving channels is a different function.
  plain = fwd({'params': p, 'batch_stats': b})
  assert not np.allclose(plain, want, rtol=1e-5, atol=1e-6)


def test_residual_nets_are_refused():
  from jaxcnn import models
  g = structured.Graph(models.get_model('resnet20_cifar'), (32, 32, 3))
  with pytest.raises(ValueError, match='residual'):
    g.prunable('stem')
