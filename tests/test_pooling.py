"""jaxcnn.ops.pooling.max_pool against flax.linen.max_pool (select-and-scatter
gradient): same outputs, same gradient routing (ties included), and the
per-backend choice of formulation."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.ops.pooling import max_pool

GEOMETRIES = [
    ((2, 9, 9, 3), (3, 3), (2, 2), 'SAME'),       # tutorial / AlexNet pools
    ((2, 8, 8, 3), (3, 3), (2, 2), 'VALID'),
    ((2, 8, 8, 2), (2, 2), (2, 2), 'VALID'),      # LeNet, BNN nets
    ((2, 7, 6, 2), (3, 3), (2, 2), ((0, 1), (0, 2))),  # ceil mode padding
    ((1, 6, 6, 2), (3, 2), (1, 2), 'SAME'),       # non-square, stride 1
    ((1, 8, 9, 2), (2, 2), (3, 3), 'VALID'),      # stride > window: gaps
    ((2, 4, 4, 3), (4, 4), (4, 4), 'VALID'),      # global pool
    ((1, 13, 13, 2), (12, 12), (1, 1), 'VALID'),  # 144 taps: int32 index
]


def _pair(geometry):
  _, window, strides, padding = geometry
  ref = lambda x: nn.max_pool(x, window, strides=strides, padding=padding)
  new = lambda x: max_pool(x, window, strides, padding)
  return ref, new


def _vjp(f, x, g):
  return jax.jit(lambda x, g: jax.vjp(f, x)[1](g)[0])(x, g)


@pytest.mark.parametrize('geometry', GEOMETRIES)
def test_ties_route_to_the_same_input_as_select_and_scatter(geometry):
  # Values in {0, 1, 2}: most windows hold several maxima. Integer-valued
  # cotangents make every sum exact, so the two gradients must be equal.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(0, 3, geometry[0]), jnp.float32)
  ref, new = _pair(geometry)
  y = ref(x)
  np.testing.assert_array_equal(new(x), y)
  g = jnp.asarray(rng.integers(1, 9, y.shape), jnp.float32)
  np.testing.assert_array_equal(_vjp(new, x, g), _vjp(ref, x, g))


@pytest.mark.parametrize('geometry', GEOMETRIES)
def test_forward_under_autodiff_equals_reduce_window(geometry):
  # The forward that records the taps computes the value itself: it must
  # equal reduce-window's, infinities and NaN (which propagates) included.
  rng = np.random.default_rng(3)
  x = rng.standard_normal(geometry[0]).astype(np.float32)
  flat = x.reshape(-1)
  flat[::7], flat[3::11], flat[5::13] = np.inf, -np.inf, np.nan
  x = jnp.asarray(x)
  ref, new = _pair(geometry)
  y, _ = jax.jit(lambda x: jax.vjp(new, x))(x)
  np.testing.assert_array_equal(y, ref(x))
  np.testing.assert_array_equal(new(x), ref(x))


@pytest.mark.parametrize('geometry', GEOMETRIES[:2])
def test_random_floats_agree_to_rounding(geometry):
  # Overlapping windows sum shares in another order: 1 ulp, not bitwise.
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal(geometry[0]), jnp.float32)
  ref, new = _pair(geometry)
  g = jnp.asarray(rng.standard_normal(ref(x).shape), jnp.float32)
  np.testing.assert_allclose(_vjp(new, x, g), _vjp(ref, x, g), rtol=1e-6,
                             atol=1e-6)


def test_bfloat16_gradient():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((2, 9, 9, 3)), jnp.bfloat16)
  ref, new = _pair(GEOMETRIES[0])
  g = jnp.ones(ref(x).shape, jnp.bfloat16)
  out = _vjp(new, x, g)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.float32(out), np.float32(_vjp(ref, x, g)),
                             atol=1e-2)


def _grad_fn():
  # A new function each call: jit's trace cache would otherwise reuse a
  # jaxpr traced for another platform's export (then XLA:CPU keeps the
  # platform switch as a runtime conditional).
  return lambda x: jax.grad(
      lambda x: max_pool(x, (3, 3), (2, 2), 'SAME').sum())(x)


def test_cpu_uses_taps_and_other_backends_keep_select_and_scatter():
  x = jnp.ones((2, 9, 9, 3))
  if jax.default_backend() == 'cpu':
    # The platform switch is resolved at compile time: no conditional and
    # no scatter remain in the optimised CPU program.
    hlo = jax.jit(_grad_fn()).lower(x).compile().as_text()
    opcodes = set(re.findall(r'= \S+ ([a-z-]+)\(', hlo))
    assert opcodes and not opcodes & {'conditional', 'scatter',
                                      'select-and-scatter'}, opcodes
  for platform, native in (('cpu', False), ('cuda', True), ('tpu', True)):
    text = jax.export.export(jax.jit(_grad_fn()), platforms=[platform])(
        x).mlir_module()
    assert ('stablehlo.select_and_scatter' in text) == native, platform


def test_bad_input_messages():
  with pytest.raises(ValueError, match='NHWC'):
    max_pool(jnp.ones((4, 4, 3)), (2, 2), (2, 2))
  with pytest.raises(ValueError, match='2 \\(spatial\\)'):
    max_pool(jnp.ones((1, 4, 4, 3)), (2, 2, 1), (2, 2))
