"""ops/fusion.materialize: the identity, a fusion boundary on CPU only."""
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models import resnet
from jaxcnn.ops.fusion import materialize


def _fn():
  # A new function each call: jit's trace cache would otherwise reuse a
  # jaxpr traced for another platform's export.
  return lambda x: jnp.sum(materialize(jnp.sin(x)) ** 2)


def test_values_and_gradients_are_exactly_the_input():
  x = jnp.array([[-0.0, 1.5], [np.inf, -2.0]], jnp.float32)
  out = jax.jit(materialize)(x)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
  assert np.signbit(np.asarray(out)[0, 0])  # -0.0 stays -0.0
  f = lambda x: jnp.sum(jnp.cos(x) * x)
  g = lambda x: jnp.sum(jnp.cos(materialize(x)) * materialize(x))
  y = jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)
  # Up to rounding: the boundary changes what XLA fuses (and contracts to FMA).
  chex.assert_trees_all_close(jax.jit(jax.grad(f))(y), jax.jit(jax.grad(g))(y),
                              rtol=1e-6, atol=1e-7)
  assert materialize(jnp.zeros((0, 3))).shape == (0, 3)


def test_nan_stays_visible():
  x = jnp.array([np.nan, 1.0, 2.0])
  assert np.isnan(np.asarray(jax.jit(materialize)(x))).all()


def test_conditional_on_cpu_identity_elsewhere():
  x = jnp.ones((4, 4))
  if jax.default_backend() == 'cpu':
    hlo = jax.jit(_fn()).lower(x).compile().as_text()
    assert 'conditional' in set(re.findall(r'= \S+ ([a-z-]+)\(', hlo))
  for platform, boundary in (('cpu', True), ('cuda', False), ('tpu', False)):
    text = jax.export.export(jax.jit(_fn()), platforms=[platform])(
        x).mlir_module()
    # The CPU branch's predicate is the only comparison in this program.
    assert ('stablehlo.compare' in text) == boundary, platform


def test_resnet_train_gradients_do_not_depend_on_the_boundaries():
  x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  labels = jnp.array([0, 1, 2, 3])
  out = {}
  for keep in (False, True):
    model = resnet.CifarResNet(num_classes=4, depth=8, width=4,
                               cpu_materialize=keep)
    v = model.init(jax.random.key(1), x)

    def loss(params, v=v, model=model):
      logits, _ = model.apply({**v, 'params': params}, x, train=True,
                              mutable=['batch_stats'])
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

    out[keep] = jax.jit(jax.value_and_grad(loss))(v['params'])
  chex.assert_trees_all_close(out[False], out[True], rtol=1e-6, atol=1e-7)
