"""LRN op: both conventions against literal loops of the formula, against
TensorFlow, gradients, and edge cases; the C++ kernel's forward and backward
against the jnp version, and where 'auto' uses it."""
import os
import subprocess
import sys
import textwrap

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')  # TF must not grab a GPU

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxcnn.models import get_model
from jaxcnn.models.layers import LRN
from jaxcnn.ops import conv as conv_ops
from jaxcnn.ops.lrn import lrn, lrn_caffe

JNP_IMPLS = ('matmul', 'reduce_window')
# 'native': the C++ kernel (ops/lrn_kernel.cc), float32, CPU.
IMPLS = JNP_IMPLS + ('native',)


def _loop(x, lo, hi, k, alpha, beta):
  """The formula, one output channel at a time, in float64."""
  x = np.asarray(x, np.float64)
  c_total = x.shape[-1]
  out = np.empty_like(x)
  for c in range(c_total):
    window = range(max(0, c - lo), min(c_total - 1, c + hi) + 1)
    sq = sum(x[..., j] ** 2 for j in window)
    out[..., c] = x[..., c] / (k + alpha * sq) ** beta
  return out


def tf_loop(x, r, bias, alpha, beta):
  return _loop(x, r, r, bias, alpha, beta)


def caffe_loop(x, n, k, alpha, beta):
  # PyTorch's padding: n//2 channels before, (n-1)//2 after.
  return _loop(x, n // 2, (n - 1) // 2, k, alpha / n, beta)


def _x(shape, seed=0, scale=3.0):
  return scale * jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('r,bias,alpha,beta', [
    (2, 2.0, 1e-4, 0.75),      # AlexNet paper
    (4, 1.0, 0.001 / 9, 0.75),  # TF CIFAR-10 tutorial
    (1, 0.5, 0.3, 0.5),        # large alpha, so the sum matters
    (0, 1.0, 1.0, 1.0),
])
def test_tf_convention_matches_loop(impl, r, bias, alpha, beta):
  x = _x((2, 3, 4, 11))
  got = lrn(x, r, bias, alpha, beta, impl=impl)
  chex.assert_shape(got, x.shape)
  chex.assert_trees_all_close(got, tf_loop(x, r, bias, alpha, beta),
                              rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('n', [1, 2, 3, 4, 5, 6])
def test_caffe_convention_matches_loop(impl, n):
  x = _x((2, 3, 3, 9), seed=1)
  got = lrn_caffe(x, n, 1.5, 0.5, 0.75, impl=impl)
  chex.assert_trees_all_close(got, caffe_loop(x, n, 1.5, 0.5, 0.75),
                              rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('n', [1, 3, 5, 7])
def test_caffe_size_n_is_tf_radius_with_alpha_over_n(n):
  x = _x((1, 2, 2, 10), seed=2)
  chex.assert_trees_all_close(
      lrn_caffe(x, n, 2.0, 1e-2, 0.75),
      lrn(x, (n - 1) // 2, 2.0, 1e-2 / n, 0.75), rtol=1e-6, atol=1e-7)


def test_matches_tensorflow():
  tf = pytest.importorskip('tensorflow')
  tf.config.set_visible_devices([], 'GPU')
  x = np.asarray(_x((2, 5, 5, 16), seed=3))
  for r, bias, alpha, beta in [(2, 2.0, 1e-4, 0.75), (4, 1.0, 0.001 / 9, 0.75),
                               (3, 0.7, 0.2, 0.6), (9, 1.0, 0.05, 0.75)]:
    want = tf.nn.local_response_normalization(
        x, depth_radius=r, bias=bias, alpha=alpha, beta=beta).numpy()
    for impl in IMPLS:
      chex.assert_trees_all_close(lrn(x, r, bias, alpha, beta, impl=impl),
                                  want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('impl', JNP_IMPLS)
def test_gradients(impl):
  x = _x((1, 2, 2, 6), seed=4, scale=1.0)
  with jax.enable_x64(True):
    x64 = jnp.asarray(x, jnp.float64)
    f = lambda v: lrn(v, 2, 1.0, 0.3, 0.75, impl=impl)
    check_grads(f, (x64,), order=2, modes=('fwd', 'rev'))
    g = lambda v: lrn_caffe(v, 4, 1.0, 0.5, 0.6, impl=impl)  # even, asymmetric
    check_grads(g, (x64,), order=1, modes=('fwd', 'rev'))


def test_gradient_matches_finite_differences_float32():
  x = _x((1, 1, 2, 5), seed=5, scale=1.0)
  f = lambda v: jnp.sum(lrn(v, 1, 1.0, 0.5, 0.75) * jnp.arange(5.0))
  grad = jax.grad(f)(x)
  eps = 1e-3
  flat = np.asarray(x).ravel()
  fd = np.empty_like(flat)
  for i in range(flat.size):
    up, dn = flat.copy(), flat.copy()
    up[i] += eps
    dn[i] -= eps
    fd[i] = (f(up.reshape(x.shape)) - f(dn.reshape(x.shape))) / (2 * eps)
  chex.assert_trees_all_close(grad.ravel(), fd, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize('impl', IMPLS)
def test_fewer_channels_than_window(impl):
  for c in (1, 2, 3):
    x = _x((1, 2, 2, c), seed=c)
    chex.assert_trees_all_close(lrn(x, 4, 1.0, 0.2, 0.75, impl=impl),
                                tf_loop(x, 4, 1.0, 0.2, 0.75), rtol=1e-5)
    chex.assert_trees_all_close(lrn_caffe(x, 5, 1.0, 0.2, 0.75, impl=impl),
                                caffe_loop(x, 5, 1.0, 0.2, 0.75), rtol=1e-5)


def test_auto_impl_on_many_channels():
  # 'auto' switches to reduce_window from 128 channels on.
  x = _x((1, 1, 2, 130), seed=10)
  chex.assert_trees_all_close(lrn(x, 3, 1.0, 0.1, 0.75),
                              tf_loop(x, 3, 1.0, 0.1, 0.75), rtol=1e-5)


@pytest.mark.parametrize('dtype', [jnp.float16, jnp.bfloat16])
def test_low_precision_inputs_keep_dtype(dtype):
  x = _x((2, 3, 3, 8), seed=6)
  got = lrn(x.astype(dtype), 2, 2.0, 1e-4, 0.75)
  chex.assert_type(got, dtype)
  want = tf_loop(np.asarray(x.astype(dtype), np.float32), 2, 2.0, 1e-4, 0.75)
  tol = 1e-2 if dtype == jnp.bfloat16 else 2e-3
  chex.assert_trees_all_close(got.astype(jnp.float32), want, rtol=tol,
                              atol=tol)
  # Squares of 300 overflow float16 (max 65504); the float32 core must not.
  big = jnp.full((1, 1, 1, 4), 300.0, dtype)
  out = lrn_caffe(big, 3, 1.0, 1.0, 0.75)
  chex.assert_tree_all_finite(out)
  chex.assert_trees_all_close(
      out.astype(jnp.float32),
      caffe_loop(np.full((1, 1, 1, 4), 300.0), 3, 1.0, 1.0, 0.75),
      rtol=1e-2)


def test_batch_of_one_and_no_batch_axis():
  x = _x((1, 4, 4, 5), seed=7)
  chex.assert_trees_all_close(lrn(x, 2, 2.0, 1e-2, 0.75),
                              tf_loop(x, 2, 2.0, 1e-2, 0.75), rtol=1e-5)
  # Channel-last is all the op assumes: a bare [C] vector works too.
  v = x[0, 0, 0]
  chex.assert_trees_all_close(lrn(v, 2, 2.0, 1e-2, 0.75),
                              tf_loop(v, 2, 2.0, 1e-2, 0.75), rtol=1e-5)


def test_jit_with_traced_hyperparameters():
  x = _x((1, 2, 2, 6), seed=8)
  f = jax.jit(lambda x, a: lrn(x, 2, 1.0, a, 0.75))
  chex.assert_trees_all_close(f(x, 0.1), tf_loop(x, 2, 1.0, 0.1, 0.75),
                              rtol=1e-5)


def test_module_conventions():
  x = _x((2, 3, 3, 7), seed=9)
  tf_mod = LRN(depth_radius=4, bias=1.0, alpha=0.001 / 9, beta=0.75)
  caffe_mod = LRN(convention='caffe', size=5, bias=1.0, alpha=1e-4, beta=0.75)
  assert tf_mod.init(jax.random.key(0), x) == {}  # no parameters
  chex.assert_trees_all_close(tf_mod.apply({}, x),
                              tf_loop(x, 4, 1.0, 0.001 / 9, 0.75), rtol=1e-5)
  chex.assert_trees_all_close(caffe_mod.apply({}, x),
                              caffe_loop(x, 5, 1.0, 1e-4, 0.75), rtol=1e-5)
  with pytest.raises(ValueError, match='convention'):
    LRN(convention='paddle').apply({}, x)


def _grads(impl, x, g, *args):
  return jax.jit(lambda x, g: jax.vjp(
      lambda v: lrn(v, *args, impl=impl), x)[1](g)[0])(x, g)


@pytest.mark.parametrize('shape,r', [
    ((2, 4, 4, 192), 2),   # AlexNet norm2: many channels
    ((3, 5, 5, 64), 4),    # the tutorial's radius
    ((2, 3, 3, 2), 4),     # fewer channels than the window
    ((1, 1, 1, 1), 0),     # one channel, no neighbours
    ((7, 13), 3),          # rank 2: channels last is all that counts
    ((130,), 1),           # rank 1
    ((0, 4, 4, 8), 2),     # empty batch
])
def test_native_backward_matches_autodiff(shape, r):
  rng = np.random.default_rng(sum(shape) + r)
  x = jnp.asarray(rng.standard_normal(shape) * 3, jnp.float32)
  g = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  for bias, alpha, beta in [(2.0, 1e-4, 0.75), (1.0, 0.3, 0.5),
                            (0.7, 0.2, 0.6)]:   # 0.6: the powf path
    args = (r, bias, alpha, beta)
    chex.assert_trees_all_close(lrn(x, *args, impl='native'),
                                lrn(x, *args, impl='reduce_window'),
                                rtol=2e-6, atol=1e-7)
    chex.assert_trees_all_close(_grads('native', x, g, *args),
                                _grads('reduce_window', x, g, *args),
                                rtol=2e-5, atol=1e-6)


def test_native_caffe_even_window_gradient():
  rng = np.random.default_rng(11)
  x = jnp.asarray(rng.standard_normal((2, 3, 3, 9)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((2, 3, 3, 9)), jnp.float32)
  grad = lambda impl: jax.grad(lambda v: jnp.vdot(  # noqa: E731
      lrn_caffe(v, 4, 1.0, 0.5, 0.6, impl=impl), g))(x)
  chex.assert_trees_all_close(grad('native'), grad('matmul'), rtol=2e-5,
                              atol=1e-6)


def test_auto_uses_the_kernel_on_cpu_and_jnp_otherwise():
  x = _x((2, 3, 3, 8), seed=12)
  step = lambda f: jax.jit(jax.grad(lambda v: jnp.sum(f(v) ** 2)))  # noqa: E731
  hlo = step(lambda v: lrn(v, 2, 2.0, 1e-4, 0.75)).lower(x).as_text()
  assert 'jaxcnn_lrn_forward' in hlo and 'jaxcnn_lrn_backward' in hlo
  # Traced hyper-parameters and float64 stay on jnp (and still work).
  traced = jax.jit(lambda v, a: lrn(v, 2, 2.0, a, 0.75))
  assert 'jaxcnn_lrn' not in traced.lower(x, 1e-4).as_text()
  with jax.enable_x64(True):
    x64 = jnp.asarray(x, jnp.float64)
    assert 'jaxcnn_lrn' not in jax.jit(
        lambda v: lrn(v, 2, 2.0, 1e-4, 0.75)).lower(x64).as_text()
    with pytest.raises(ValueError, match='float32'):
      lrn(x64, 2, 2.0, 1e-4, 0.75, impl='native')
  with pytest.raises(ValueError, match='traced'):
    jax.jit(lambda v, a: lrn(v, 2, 2.0, a, 0.75, impl='native'))(x, 1e-4)
  # GPU/TPU lowerings keep XLA's ops: the CPU branch is the only FFI one.
  for platform in ('cuda', 'tpu'):
    try:
      text = jax.jit(lambda v: lrn(v, 2, 2.0, 1e-4, 0.75)).trace(x).lower(
          lowering_platforms=(platform,)).as_text()
    except Exception as e:  # pylint: disable=broad-except
      pytest.skip(f'cannot lower for {platform} here: {e}')
    assert 'jaxcnn_lrn' not in text


def test_native_under_vmap():
  x = _x((3, 2, 2, 2, 6), seed=13)
  f = lambda v: lrn(v, 1, 1.0, 0.3, 0.75, impl='native')  # noqa: E731
  chex.assert_trees_all_close(jax.vmap(f)(x), lrn(x, 1, 1.0, 0.3, 0.75,
                                                  impl='matmul'),
                              rtol=2e-6, atol=1e-7)


def test_kernel_unavailable_falls_back_in_a_fresh_process(tmp_path):
  """No compiler and an empty cache: status says why, 'auto' runs on jnp
  with the same results, 'native' is refused with that reason."""
  code = textwrap.dedent('''
      import importlib
      import jax, jax.numpy as jnp
      lrn = importlib.import_module('jaxcnn.ops.lrn')
      lrn_native = importlib.import_module('jaxcnn.ops.lrn_native')
      st = lrn_native.status()
      assert not st.ok and 'compiler' in st.reason, st
      x = jnp.linspace(-3, 3, 2 * 3 * 3 * 8).reshape(2, 3, 3, 8)
      f = jax.jit(lambda v: lrn.lrn(v, 2, 2.0, 1e-4, 0.75))
      assert 'jaxcnn_lrn' not in f.lower(x).as_text()
      ref = lrn.lrn(x, 2, 2.0, 1e-4, 0.75, impl='matmul')
      assert float(jnp.max(jnp.abs(f(x) - ref))) < 1e-6
      try:
        lrn.lrn(x, 2, 2.0, 1e-4, 0.75, impl='native')
      except ValueError as e:
        assert 'unavailable' in str(e), e
      else:
        raise AssertionError('native was not refused')
      print('OK')
  ''')
  env = {**os.environ, 'CXX': str(tmp_path / 'no-such-g++'),
         'JAXCNN_CACHE_DIR': str(tmp_path / 'cache'), 'PATH': '/nonexistent'}
  done = subprocess.run([sys.executable, '-c', code], env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and 'OK' in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize('name', ['cifar10_tutorial', 'alexnet_cifar'])
def test_models_use_the_kernel_only_beside_onednn_convs(name):
  """conv='onednn' (one CPU device's train step): the LRN kernel too;
  conv='xla' (exports, multi-device meshes, GPU/TPU): XLA ops only."""
  if not conv_ops.onednn_status().ok:
    pytest.skip(conv_ops.onednn_status().reason)
  x = jnp.zeros((2, 32, 32, 3) if name == 'alexnet_cifar' else (2, 24, 24, 3))
  for conv in ('xla', 'onednn'):
    model = get_model(name, conv=conv)
    params = model.init(jax.random.key(0), x)
    loss = lambda p: jnp.sum(model.apply(p, x) ** 2)  # noqa: E731
    hlo = jax.jit(jax.grad(loss)).lower(params).as_text()
    uses = 'jaxcnn_lrn_forward' in hlo and 'jaxcnn_lrn_backward' in hlo
    assert uses == (conv == 'onednn'), (conv, uses)
