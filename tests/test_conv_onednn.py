"""oneDNN convolutions (jaxcnn/ops/conv.py) against XLA's, and where they apply.

Classes checked, each with several members: geometries (kernel 1-11, stride
1-4, SAME/VALID/asymmetric/zero padding, 1-64 channels, batch 1-5) forward
and both gradients; the cases oneDNN does not take (groups, dilation, bf16,
NCHW) fall back to lax exactly; GPU/TPU lowerings carry no oneDNN call;
whole models with conv='onednn' equal conv='xla'; the train step the CLI
builds uses oneDNN on one CPU device only; the library's failure modes give
reasons, not crashes; jaxcnn/hostmem.py really stops per-step page faults.
"""
import importlib.metadata
import os
import shutil
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxcnn import models, parallel
from jaxcnn.ops import conv, cpu_options, dnnl_build
from tests import cli_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NHWC = ('NHWC', 'HWIO', 'NHWC')


def _installed(dist: str) -> bool:
  try:
    importlib.metadata.version(dist)
    return True
  except importlib.metadata.PackageNotFoundError:
    return False


@pytest.fixture(scope='module')
def onednn():
  st = conv.onednn_status()
  if not st.ok:
    pytest.skip(f'oneDNN unavailable: {st.reason}')
  return st


def test_available_when_installed():
  """requirements.txt installs oneDNN: with it and a compiler, it must load
  (a silent fallback would hide a broken build)."""
  if not (_installed('onednn') and _installed('onednn-devel')
          and shutil.which('g++')):
    pytest.skip('onednn wheels or g++ not installed')
  st = conv.onednn_status()
  assert st.ok, st.reason
  assert st.version.startswith('3.')


def _both(x, w, **kw):
  """(oneDNN, lax) value and gradients of a nonlinear function of the conv."""
  def f(op):
    return jax.jit(jax.value_and_grad(
        lambda a, b: jnp.sum(jnp.tanh(op(a, b, **kw))),
        argnums=(0, 1)))
  return f(conv.conv_general_dilated)(x, w), f(lax.conv_general_dilated)(x, w)


GEOMETRIES = [  # (x shape, w shape, strides, padding)
    ((2, 12, 12, 8), (5, 5, 8, 16), (1, 1), 'SAME'),
    ((3, 9, 11, 3), (3, 3, 3, 4), (2, 2), 'SAME'),
    ((1, 32, 32, 3), (11, 11, 3, 6), (4, 4), ((2, 1), (0, 3))),
    ((5, 7, 7, 16), (1, 1, 16, 8), (1, 1), 'VALID'),
    ((2, 8, 8, 64), (3, 3, 64, 32), (1, 2), ((1, 1), (0, 0))),
    ((2, 6, 6, 1), (2, 2, 1, 3), (1, 1), 'VALID'),
]


@pytest.mark.parametrize('xs,ws,strides,padding', GEOMETRIES)
def test_matches_xla_forward_and_gradients(onednn, xs, ws, strides, padding):
  rng = np.random.default_rng(sum(xs) + sum(ws))
  x = jnp.asarray(rng.standard_normal(xs, np.float32))
  w = jnp.asarray(rng.standard_normal(ws, np.float32) * 0.3)
  kw = dict(window_strides=strides, padding=padding, dimension_numbers=NHWC)
  y = conv.conv_general_dilated(x, w, **kw)
  np.testing.assert_allclose(y, lax.conv_general_dilated(x, w, **kw),
                             rtol=1e-5, atol=1e-5)
  (v1, (dx1, dw1)), (v2, (dx2, dw2)) = _both(x, w, **kw)
  np.testing.assert_allclose(v1, v2, rtol=1e-5)
  np.testing.assert_allclose(dx1, dx2, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(dw1, dw2, rtol=1e-4, atol=1e-4)
  hlo = jax.jit(lambda a, b: conv.conv_general_dilated(a, b, **kw)).lower(
      x, w).as_text()
  assert 'jaxcnn_dnnl_conv_forward' in hlo


@pytest.mark.parametrize('case', ['groups', 'rhs_dilation', 'lhs_dilation',
                                  'bf16', 'nchw', 'negative_pad'])
def test_unsupported_cases_are_xla_exactly(case):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 9, 9, 4), np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, 4, 4), np.float32))
  kw = dict(window_strides=(1, 1), padding='SAME', dimension_numbers=NHWC)
  if case == 'groups':
    w, kw['feature_group_count'] = w[:, :, :2], 2
  elif case == 'rhs_dilation':
    kw['rhs_dilation'] = (2, 2)
  elif case == 'lhs_dilation':
    kw['lhs_dilation'], kw['padding'] = (2, 2), ((1, 1), (1, 1))
  elif case == 'bf16':
    x, w = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  elif case == 'nchw':
    x, kw['dimension_numbers'] = x.transpose(0, 3, 1, 2), ('NCHW', 'HWIO', 'NCHW')
  elif case == 'negative_pad':
    kw['padding'] = ((-1, 0), (1, 1))
  got = jax.jit(lambda a, b: conv.conv_general_dilated(a, b, **kw))
  assert 'jaxcnn_dnnl' not in got.lower(x, w).as_text()
  np.testing.assert_array_equal(
      got(x, w), jax.jit(lambda a, b: lax.conv_general_dilated(a, b, **kw))(x, w))


@pytest.mark.parametrize('platform', ['cuda', 'tpu'])
def test_accelerator_lowering_is_xla_conv(platform):
  x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  w = jax.ShapeDtypeStruct((3, 3, 3, 4), jnp.float32)
  f = jax.jit(jax.grad(lambda a, b: jnp.sum(conv.conv_general_dilated(
      a, b, (1, 1), 'SAME', dimension_numbers=NHWC)), argnums=(0, 1)))
  text = jax.export.export(f, platforms=[platform])(x, w).mlir_module()
  assert 'jaxcnn_dnnl' not in text
  assert 'stablehlo.convolution' in text


def test_vmap_and_jit_under_grad(onednn):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((3, 2, 6, 6, 2), np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, 2, 5), np.float32))
  def loss(op):
    return lambda x, w: jnp.sum(jax.vmap(
        lambda a: op(a, w, (1, 1), 'SAME', dimension_numbers=NHWC) ** 2)(x))
  g1 = jax.grad(loss(conv.conv_general_dilated), argnums=1)(x, w)
  g2 = jax.grad(loss(lax.conv_general_dilated), argnums=1)(x, w)
  np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name,shape', [
    ('cifar10_tutorial', (3, 24, 24, 3)), ('lenet5', (2, 32, 32, 1)),
    ('simple_cnn', (2, 16, 16, 3)), ('alexnet_cifar', (2, 32, 32, 3)),
    ('resnet20_cifar', (2, 16, 16, 3))])
def test_models_agree_between_conv_libraries(onednn, name, shape):
  """Same parameters, same logits and gradients with either library."""
  a = models.get_model(name, num_classes=10, conv='onednn')
  b = models.get_model(name, num_classes=10, conv='xla')
  x = jax.random.normal(jax.random.key(0), shape)
  variables = b.init({'params': jax.random.key(1),
                      'dropout': jax.random.key(2)}, x)
  params = variables['params']
  rest = {k: v for k, v in variables.items() if k != 'params'}  # BN stats
  def loss(m):
    return jax.jit(jax.value_and_grad(lambda p: jnp.sum(
        jax.nn.log_softmax(m.apply({'params': p, **rest}, x))[:, 3])))
  (la, ga), (lb, gb) = loss(a)(params), loss(b)(params)
  np.testing.assert_allclose(la, lb, rtol=1e-4)
  for u, v in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(u, v, rtol=2e-3, atol=2e-5)
  assert models.has_field(name, 'conv')


def test_model_conv_choice(onednn):
  one = parallel.make_mesh(1, jax.devices()[:1])
  assert cpu_options.model_conv('auto', one) == 'onednn'
  assert cpu_options.model_conv('onednn', one) == 'onednn'
  for lib in ('eigen', 'ynnpack'):
    assert cpu_options.model_conv(lib, one) == 'xla'
  with pytest.raises(ValueError, match='xla_cpu_conv'):
    cpu_options.model_conv('mkl', one)
  assert 'gpu' in cpu_options.onednn_unavailable('auto', 'gpu', 1)
  assert 'one-device' in cpu_options.onednn_unavailable('auto', 'cpu', 4)
  assert cpu_options.describe('auto', one).startswith('convolutions: oneDNN 3.')
  assert cpu_options.describe('eigen', one) == (
      'convolutions: XLA eigen (xla_cpu_conv=eigen)')


def test_multi_device_mesh_stays_on_xla(onednn):
  if len(jax.devices()) < 2:
    pytest.skip('needs 2 CPU devices')
  two = parallel.make_mesh(2, jax.devices()[:2])
  assert cpu_options.model_conv('auto', two) == 'xla'
  with pytest.raises(ValueError, match='one-device mesh'):
    cpu_options.model_conv('onednn', two)


def test_cli_train_step_uses_onednn_and_matches_eigen(onednn, tiny_config):
  """experiment.build (what train/eval/predict use): the step's HLO calls
  oneDNN with 'auto', and two steps end where the Eigen step ends."""
  results = {}
  for lib in ('auto', 'eigen'):
    hlo, losses, state = cli_step.run_steps(tiny_config, lib, 2, pixel_max=17)
    results[lib] = (hlo, losses[-1], state.params)
  assert 'jaxcnn_dnnl_conv_backward_weights' in results['auto'][0]
  assert 'jaxcnn_dnnl' not in results['eigen'][0]
  np.testing.assert_allclose(results['auto'][1], results['eigen'][1], rtol=1e-5)
  for u, v in zip(jax.tree.leaves(results['auto'][2]),
                  jax.tree.leaves(results['eigen'][2])):
    np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('what', ['no_headers', 'no_library', 'no_compiler'])
def test_build_failures_give_reasons(tmp_path, monkeypatch, what):
  inc, lib = tmp_path / 'include', tmp_path / 'lib'
  inc.mkdir(), lib.mkdir()
  if what != 'no_headers':
    (inc / 'dnnl.hpp').write_text('')
  if what == 'no_compiler':
    (lib / 'libdnnl.so').write_text('')
    monkeypatch.setenv('CXX', str(tmp_path / 'missing-g++'))
    with pytest.raises(Exception):
      dnnl_build._compile(str(inc), str(lib), str(tmp_path / 'out' / 'x.so'))
    assert not (tmp_path / 'out' / 'x.so').exists()  # nothing half-written
    return
  with pytest.raises(FileNotFoundError,
                     match='dnnl.hpp' if what == 'no_headers' else 'libdnnl'):
    dnnl_build._find(str(tmp_path))


def test_unavailable_status_in_a_fresh_process(tmp_path):
  """JAXCNN_DNNL_ROOT at an empty prefix: status says why, 'auto' trains on
  XLA convs and 'onednn' is refused with that reason."""
  code = textwrap.dedent('''
      import jax
      from jaxcnn import parallel
      from jaxcnn.ops import conv, cpu_options
      st = conv.onednn_status()
      assert not st.ok and 'dnnl.hpp' in st.reason, st
      mesh = parallel.make_mesh(1, jax.devices()[:1])
      assert cpu_options.model_conv('auto', mesh) == 'xla'
      try:
        cpu_options.model_conv('onednn', mesh)
      except ValueError as e:
        assert 'unavailable' in str(e), e
      else:
        raise AssertionError('onednn accepted')
      print('ok')''')
  env = {**os.environ, 'JAXCNN_DNNL_ROOT': str(tmp_path)}
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr


def test_keep_freed_memory_stops_page_faults():
  """A freed 64 MB block is reused without first-touch faults afterwards
  (the per-step temporaries of XLA:CPU, jaxcnn/hostmem.py); without it,
  glibc maps fresh pages each time."""
  code = textwrap.dedent('''
      import ctypes, resource, sys, threading
      from jaxcnn import hostmem
      if sys.argv[1] == 'keep':
        print(hostmem.keep_freed_memory(), file=sys.stderr)
      libc = ctypes.CDLL('libc.so.6')
      libc.malloc.restype = ctypes.c_void_p
      libc.free.argtypes = [ctypes.c_void_p]
      size, counts = 64 << 20, []
      def step():  # as an XLA thread: allocate, write all of it, free
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)
        libc.free(p)
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                      - before)
      for _ in range(4):
        t = threading.Thread(target=step)
        t.start(), t.join()
      print(sum(counts[1:]))''')
  counts = {}
  for mode in ('keep', 'plain'):
    env = {**os.environ, 'JAXCNN_HOST_MALLOC': 'keep'}
    out = subprocess.run([sys.executable, '-c', code, mode], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    counts[mode] = int(out.stdout.split()[-1])
  assert counts['plain'] > 3 * 16000  # 16,384 pages per 64 MB block
  assert counts['keep'] < 1000, counts


def test_keep_freed_memory_opt_out(monkeypatch):
  monkeypatch.setenv('JAXCNN_HOST_MALLOC', 'default')
  from jaxcnn import hostmem
  assert hostmem.keep_freed_memory().startswith('default')


class _TwoConvs(nn.Module):
  @nn.compact
  def __call__(self, x):
    op = conv.conv_fn('onednn')
    x = nn.relu(nn.Conv(4, (3, 3), conv_general_dilated=op)(x))
    return nn.Conv(2, (3, 3), strides=2, padding='VALID',
                   conv_general_dilated=op)(x)


def test_flax_conv_takes_the_function(onednn):
  x = jnp.ones((2, 9, 9, 3))
  m = _TwoConvs()
  p = m.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='conv impl'):
    conv.conv_fn('mkl')
  y = jax.jit(m.apply)(p, x)
  assert y.shape == (2, 4, 4, 2)
  assert 'jaxcnn_dnnl' in jax.jit(m.apply).lower(p, x).as_text()


def test_status_first_asked_inside_a_trace(onednn):
  """A model built inside jit asks for oneDNN first: the self-check must run
  eagerly there, not fail on tracers and cache a false 'unavailable'."""
  code = textwrap.dedent('''
      import jax
      from jaxcnn.ops import conv
      def f(x):
        conv.conv_fn('onednn')
        return x * 2
      assert float(jax.jit(f)(1.0)) == 2.0
      st = conv.onednn_status()
      assert st.ok, st
      print('ok')''')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr
