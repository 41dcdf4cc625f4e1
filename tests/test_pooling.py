"""jaxcnn.ops.pooling.max_pool against flax.linen.max_pool (select-and-scatter
gradient): same outputs, same gradient routing (ties included), for the jnp
tap walk ('taps') and the C++ kernel ('auto' picks it on CPU where it can
run), and the per-backend choice of formulation."""
import os
import re
import subprocess
import sys
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import get_model
from jaxcnn.ops import conv as conv_ops
from jaxcnn.ops import pool_native
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


IMPLS = ['taps', 'auto']  # 'auto': the C++ kernel where it can run


def _pair(geometry, impl='taps'):
  _, window, strides, padding = geometry
  ref = lambda x: nn.max_pool(x, window, strides=strides, padding=padding)
  new = lambda x: max_pool(x, window, strides, padding, impl=impl)
  return ref, new


def _vjp(f, x, g):
  return jax.jit(lambda x, g: jax.vjp(f, x)[1](g)[0])(x, g)


@pytest.mark.parametrize('geometry', GEOMETRIES)
@pytest.mark.parametrize('impl', IMPLS)
def test_ties_route_to_the_same_input_as_select_and_scatter(geometry, impl):
  # Values in {0, 1, 2}: most windows hold several maxima. Integer-valued
  # cotangents make every sum exact, so the two gradients must be equal.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(0, 3, geometry[0]), jnp.float32)
  ref, new = _pair(geometry, impl)
  y = ref(x)
  np.testing.assert_array_equal(new(x), y)
  g = jnp.asarray(rng.integers(1, 9, y.shape), jnp.float32)
  np.testing.assert_array_equal(_vjp(new, x, g), _vjp(ref, x, g))


@pytest.mark.parametrize('geometry', GEOMETRIES)
@pytest.mark.parametrize('impl', IMPLS)
def test_forward_under_autodiff_equals_reduce_window(geometry, impl):
  # The forward that records the taps computes the value itself: it must
  # equal reduce-window's, infinities and NaN (which propagates) included.
  rng = np.random.default_rng(3)
  x = rng.standard_normal(geometry[0]).astype(np.float32)
  flat = x.reshape(-1)
  flat[::7], flat[3::11], flat[5::13] = np.inf, -np.inf, np.nan
  x = jnp.asarray(x)
  ref, new = _pair(geometry, impl)
  y, _ = jax.jit(lambda x: jax.vjp(new, x))(x)
  np.testing.assert_array_equal(y, ref(x))
  np.testing.assert_array_equal(new(x), ref(x))


@pytest.mark.parametrize('geometry', GEOMETRIES[:4])
@pytest.mark.parametrize('impl', IMPLS)
def test_random_floats_agree_to_rounding(geometry, impl):
  # Overlapping windows sum shares in another order: 1 ulp, not bitwise.
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal(geometry[0]), jnp.float32)
  ref, new = _pair(geometry, impl)
  g = jnp.asarray(rng.standard_normal(ref(x).shape), jnp.float32)
  np.testing.assert_allclose(_vjp(new, x, g), _vjp(ref, x, g), rtol=1e-6,
                             atol=1e-6)


def test_bfloat16_gradient():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((2, 9, 9, 3)), jnp.bfloat16)
  ref, new = _pair(GEOMETRIES[0], 'auto')  # bfloat16: 'auto' keeps taps
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


def _native_or_skip():
  st = pool_native.status()
  if not st.ok:
    pytest.skip(st.reason)


def test_auto_uses_the_kernel_on_cpu_float32_only():
  _native_or_skip()
  x = jnp.ones((2, 9, 9, 3))
  grad = lambda impl, w=(3, 3): jax.jit(jax.grad(  # noqa: E731
      lambda v: max_pool(v, w, (2, 2), 'SAME', impl=impl).sum()))
  hlo = grad('auto').lower(x).as_text()
  assert 'jaxcnn_pool_forward_argmax' in hlo and 'jaxcnn_pool_backward' in hlo
  assert '@jaxcnn_pool_forward(' in jax.jit(
      lambda v: max_pool(v, (3, 3), (2, 2), 'SAME', impl='auto')).lower(
          x).as_text()
  assert 'jaxcnn_pool' not in grad('taps').lower(x).as_text()
  # More than 127 taps or bfloat16: 'auto' keeps the tap walk, 'native'
  # says why it cannot.
  big = jnp.ones((1, 13, 13, 2))
  assert 'jaxcnn_pool' not in grad('auto', (12, 12)).lower(big).as_text()
  with pytest.raises(ValueError, match='144 taps'):
    max_pool(big, (12, 12), (1, 1), impl='native')
  half = x.astype(jnp.bfloat16)
  assert 'jaxcnn_pool' not in grad('auto').lower(half).as_text()
  with pytest.raises(ValueError, match='bfloat16'):
    max_pool(half, (3, 3), (2, 2), impl='native')
  with pytest.raises(ValueError, match='impl'):
    max_pool(x, (3, 3), (2, 2), impl='fast')
  # GPU/TPU keep XLA's select-and-scatter: the FFI call is CPU-only.
  for platform in ('cuda', 'tpu'):
    text = jax.export.export(grad('auto'), platforms=[platform])(
        x).mlir_module()
    assert 'jaxcnn_pool' not in text and 'select_and_scatter' in text


def test_native_under_vmap_and_empty_batch():
  _native_or_skip()
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.standard_normal((3, 2, 9, 9, 4)), jnp.float32)
  f = lambda v: max_pool(v, (3, 3), (2, 2), 'SAME', impl='native')  # noqa: E731
  ref = lambda v: nn.max_pool(v, (3, 3), strides=(2, 2), padding='SAME')  # noqa: E731
  np.testing.assert_array_equal(jax.vmap(f)(x),
                                jax.vmap(ref)(x))
  g = jnp.asarray(rng.standard_normal((3, 2, 5, 5, 4)), jnp.float32)
  np.testing.assert_allclose(_vjp(jax.vmap(f), x, g), _vjp(jax.vmap(ref), x, g),
                             rtol=1e-6, atol=1e-6)
  empty = jnp.zeros((0, 9, 9, 4))
  assert f(empty).shape == (0, 5, 5, 4)
  assert _vjp(f, empty, jnp.zeros((0, 5, 5, 4))).shape == empty.shape


def test_kernel_unavailable_falls_back_in_a_fresh_process(tmp_path):
  """No compiler and an empty cache: status says why, 'auto' runs the tap
  walk with the same results, 'native' is refused with that reason."""
  code = textwrap.dedent('''
      import importlib
      import jax, jax.numpy as jnp
      pooling = importlib.import_module('jaxcnn.ops.pooling')
      st = importlib.import_module('jaxcnn.ops.pool_native').status()
      assert not st.ok and 'compiler' in st.reason, st
      x = jnp.linspace(-3, 3, 2 * 9 * 9 * 3).reshape(2, 9, 9, 3)
      f = jax.jit(lambda v: pooling.max_pool(v, (3, 3), (2, 2), 'SAME',
                                             impl='auto'))
      assert 'jaxcnn_pool' not in f.lower(x).as_text()
      ref = pooling.max_pool(x, (3, 3), (2, 2), 'SAME', impl='taps')
      assert bool(jnp.all(f(x) == ref))
      try:
        pooling.max_pool(x, (3, 3), (2, 2), 'SAME', impl='native')
      except ValueError as e:
        assert 'compiler' in str(e), e
      else:
        raise AssertionError('native was not refused')
      print('OK')
  ''')
  env = {**os.environ, 'CXX': str(tmp_path / 'no-such-g++'),
         'JAXCNN_CACHE_DIR': str(tmp_path / 'cache'), 'PATH': '/nonexistent'}
  done = subprocess.run([sys.executable, '-c', code], env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and 'OK' in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize('name', ['cifar10_tutorial', 'alexnet_cifar',
                                  'alexnet_cifar_ceil'])
def test_models_use_the_kernel_only_beside_onednn_convs(name, monkeypatch):
  """conv='onednn': the pool kernel in the train step; conv='xla' (exports,
  meshes, GPU/TPU): XLA ops only. The kernel's loss and gradients equal
  the tap walk's in the same (oneDNN) model."""
  _native_or_skip()
  if not conv_ops.onednn_status().ok:
    pytest.skip(conv_ops.onednn_status().reason)
  kw = {'pool_mode': 'ceil'} if name.endswith('_ceil') else {}
  name = name.removesuffix('_ceil')
  x = jax.random.normal(jax.random.key(1), (
      (2, 32, 32, 3) if name == 'alexnet_cifar' else (2, 24, 24, 3)))

  def step(conv):
    model = get_model(name, conv=conv, **kw)
    params = model.init(jax.random.key(0), x)
    f = jax.jit(jax.value_and_grad(
        lambda p: jnp.sum(model.apply(p, x) ** 2)))
    return 'jaxcnn_pool_backward' in f.lower(params).as_text(), f(params)

  assert not step('xla')[0]
  uses, native = step('onednn')
  assert uses
  module = sys.modules[type(get_model(name)).__module__]
  monkeypatch.setattr(module, 'pool_impl', lambda conv: 'taps')
  uses, taps = step('onednn')
  assert not uses
  chex.assert_trees_all_close(native, taps, rtol=1e-6, atol=1e-7)
