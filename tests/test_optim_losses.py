"""Schedules, coupled L2, EMA and the loss terms on exact small trees."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import losses, optim
from jaxcnn.config_base import base_config


def test_staircase_exponential_matches_tf_formula():
  s = optim.staircase_exponential(0.1, 0.1, 350)
  for step, want in ((0, 0.1), (349, 0.1), (350, 0.01), (1049, 0.001)):
    np.testing.assert_allclose(s(step), want, rtol=1e-6)


def test_discexp_counts_samples_seen():
  # Paddle: lr * 0.1^floor(samples / 5e6); 5e6 / 128 = 39062.5 steps.
  s = optim.discexp(0.1, 0.1, 5e6, 128)
  np.testing.assert_allclose(s(39062), 0.1, rtol=1e-6)
  np.testing.assert_allclose(s(39063), 0.01, rtol=1e-6)
  np.testing.assert_allclose(s(78125), 0.001, rtol=1e-5)


def test_ema_decay_uses_tf_num_updates_warmup():
  np.testing.assert_allclose(optim.ema_decay_at(0, 0.9999), 0.1, rtol=1e-6)
  np.testing.assert_allclose(optim.ema_decay_at(90, 0.9999), 0.91, rtol=1e-6)
  np.testing.assert_allclose(optim.ema_decay_at(10**7, 0.9999), 0.9999)
  ema = optim.ema_update({'w': jnp.array([1.0])}, {'w': jnp.array([3.0])},
                         jnp.array(0), 0.9999)
  np.testing.assert_allclose(ema['w'], [0.1 * 1 + 0.9 * 3], rtol=1e-6)


def test_coupled_l2_adds_rate_times_weight_to_kernels_only():
  cfg = base_config()
  cfg.optim.momentum = 0.0
  cfg.l2.mode, cfg.l2.rate, cfg.l2.include = 'coupled', 0.5, '.*'
  params = {'dense': {'kernel': jnp.array([2.0]), 'bias': jnp.array([2.0])}}
  tx = optim.make_tx(cfg, params, optax.constant_schedule(1.0))
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  chex.assert_trees_all_close(
      updates, {'dense': {'kernel': jnp.array([-1.0]), 'bias': jnp.array([0.0])}})


def test_adam_first_step_is_lr_times_gradient_sign():
  cfg = base_config()
  cfg.optim.optimizer, cfg.optim.momentum = 'adam', 0.9
  params = {'w': jnp.array([1.0, -2.0, 3.0])}
  tx = optim.make_tx(cfg, params, optax.constant_schedule(0.1))
  grads = {'w': jnp.array([0.5, -3e-4, 20.0])}  # the scale doesn't matter
  updates, _ = tx.update(grads, tx.init(params), params)
  chex.assert_trees_all_close(updates, {'w': jnp.array([-0.1, 0.1, -0.1])},
                              atol=1e-5)


def test_unknown_optimizer_is_rejected():
  from jaxcnn import experiment
  from jaxcnn.errors import ConfigError
  cfg = base_config()
  cfg.optim.optimizer = 'rmsprop'
  with pytest.raises(ConfigError, match="optim.optimizer 'rmsprop'"):
    experiment.validate(cfg)


def test_l2_loss_on_selected_layers_only():
  params = {'local3': {'kernel': jnp.array([1.0, 2.0]), 'bias': jnp.ones(2)},
            'conv1': {'kernel': jnp.array([10.0])}}
  mask = losses.param_mask(params, 'local3|local4')
  assert mask == {'local3': {'kernel': True, 'bias': False},
                  'conv1': {'kernel': False}}
  np.testing.assert_allclose(losses.l2_loss(params, mask), 2.5)  # (1+4)/2


def test_cross_entropy_masked_mean():
  logits = jnp.log(jnp.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]))
  labels = jnp.array([0, 0, 0])
  want = -(np.log(0.5) + np.log(0.9)) / 2
  np.testing.assert_allclose(
      losses.cross_entropy(logits, labels, jnp.array([1.0, 1.0, 0.0])), want,
      rtol=1e-6)


def test_distillation_loss_hand_computed():
  s = jnp.array([[1.0, 0.0]])
  t = jnp.array([[0.0, 2.0]])
  temp, lam = 2.0, 0.25
  p_t = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
  log_p_s = np.array([0.5, 0.0]) - np.log(np.exp([0.5, 0.0]).sum())
  soft = -(p_t * log_p_s).sum()
  hard = -(np.array([1.0, 0.0]) - np.log(np.exp([1.0, 0.0]).sum()))[0]
  want = lam * hard + (1 - lam) * temp**2 * soft
  got = losses.distillation_loss(s, t, jnp.array([0]), temp, lam)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # The teacher gets no gradient.
  g = jax.grad(lambda tt: losses.distillation_loss(s, tt, jnp.array([0]),
                                                   temp, lam))(t)
  chex.assert_trees_all_equal(g, jnp.zeros_like(t))
