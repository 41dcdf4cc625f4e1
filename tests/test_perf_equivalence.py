"""Speed options against the plain implementation (docs/performance.md).

* xla_cpu_conv='eigen' vs 'ynnpack' (jaxlib's default): the same train
  step, different convolution kernels, so equal up to float summation order
  ('auto'/'onednn', the oneDNN path, is tests/test_conv_onednn.py).
* precision='bfloat16' is a config option that changes numerics on purpose:
  checked to stay close to float32 and to keep float32 master weights.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import experiment, parallel, train
from jaxcnn.data import pipeline
from jaxcnn.errors import ConfigError
from jaxcnn.ops import conv as conv_ops
from jaxcnn.ops import cpu_options


def _run(config, steps=2):
  """`steps` train steps of `config` on one fixed digits-shaped batch."""
  mesh = parallel.make_mesh(1, jax.devices()[:1])
  model = experiment.build_model(config)
  tx, schedule = experiment.make_optimizer(config, model,
                                           experiment.Plan(100, 100))
  state = experiment.init_state(config, model, tx, mesh)
  fn = train.make_train_fn(model, tx, schedule, config, state.params, mesh,
                           jax.tree.map(lambda x: x.sharding, state))
  rng = np.random.default_rng(0)
  batch = pipeline.put_global(
      {'image': rng.integers(0, 17, (config.batch_size, 8, 8, 1), np.uint8),
       'label': rng.integers(0, 10, (config.batch_size,), np.int32)},
      parallel.data_sharding(mesh))
  losses = []
  for _ in range(steps):
    state, m = fn(state, batch)
    losses.append(float(m['loss']))
  return state, losses, fn.lower(state, batch).as_text()


@pytest.fixture
def config(tiny_config):
  tiny_config.batch_size = 8
  return tiny_config


@pytest.fixture(scope='module')
def plain_run():
  """The float32 CPU step on Eigen convs, shared by two tests."""
  from configs import quickstart
  c = quickstart.get_config()
  c.batch_size = 8
  c.xla_cpu_conv = 'eigen'
  return _run(c)


def test_eigen_conv_matches_ynnpack(config, plain_run):
  assert config.xla_cpu_conv == 'auto'  # the CPU default
  b = config.copy_and_resolve_references()
  b.xla_cpu_conv = 'ynnpack'
  sa, la, _ = plain_run
  sb, lb, _ = _run(b)
  np.testing.assert_allclose(la, lb, rtol=1e-5)
  for x, y in zip(jax.tree.leaves(sa.params), jax.tree.leaves(sb.params)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_cpu_options_only_on_cpu():
  opts = cpu_options.train_compiler_options('cpu', 'eigen')
  assert opts == {'xla_cpu_experimental_ynn_fusion_type':
                  'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,'
                  'LIBRARY_FUSION_TYPE_REDUCE'}
  assert cpu_options.train_compiler_options('cpu', 'auto') == opts
  assert cpu_options.train_compiler_options('cpu', 'ynnpack') is None
  assert cpu_options.train_compiler_options('gpu', 'eigen') is None
  with pytest.raises(ValueError, match='xla_cpu_conv'):
    cpu_options.train_compiler_options('cpu', 'mkl')


def test_bfloat16_step_close_to_float32(config, plain_run):
  bf16 = config.copy_and_resolve_references()
  bf16.precision = 'bfloat16'
  s32, l32, _ = plain_run
  s16, l16, hlo = _run(bf16)
  assert 'bf16' in hlo  # the convs and dots really run in bfloat16
  np.testing.assert_allclose(l16, l32, rtol=2e-2)
  for x, y in zip(jax.tree.leaves(s16.params), jax.tree.leaves(s32.params)):
    assert x.dtype == jnp.float32  # master weights stay float32
    np.testing.assert_allclose(x, y, rtol=0.05, atol=2e-3)
  for tree in (s16.opt_state, s16.ema_params):
    assert all(v.dtype != jnp.bfloat16 for v in jax.tree.leaves(tree))


@pytest.mark.parametrize('field,value', [('precision', 'float16'),
                                         ('xla_cpu_conv', 'mkl')])
def test_bad_speed_options_are_config_errors(config, field, value):
  config[field] = value
  with pytest.raises(ConfigError, match=field):
    experiment.validate(config)


def _batch_windowed_reductions(hlo: str) -> list[str]:
  """4-D reduce-windows whose window spans the batch axis: how XLA:CPU's
  tree-reduction rewrite lowers a sum over N, H, W (a conv bias's gradient)
  when YNNPACK does not take reductions (~10x slower than its reduce).
  Max pools (1xKxKx1) and small 2-D sums (dense biases) do not count."""
  windows = re.findall(r'reduce-window\([^)]*\), window=\{size=([0-9x]+)',
                       hlo)
  return [w for w in windows if w.count('x') == 3 and not w.startswith('1x')]


@pytest.mark.parametrize('conv', ['eigen', 'onednn', 'onednn_bf16'])
def test_train_step_sums_are_not_reduce_windows(conv):
  """Bias gradients (sums over N, H, W) go to YNNPACK's reduce in every CPU
  conv library's train step; the old option set is the control."""
  if conv.startswith('onednn'):
    status = (conv_ops.onednn_bf16_status() if conv == 'onednn_bf16'
              else conv_ops.onednn_status())
    if not status.ok:
      pytest.skip(status.reason)
  from configs import quickstart
  c = quickstart.get_config()
  c.batch_size = 64
  c.xla_cpu_conv = conv
  mesh = parallel.make_mesh(1, jax.devices()[:1])
  model = experiment.build_model(c, cpu_options.model_conv(conv, mesh))
  tx, schedule = experiment.make_optimizer(c, model, experiment.Plan(10, 10))
  state = experiment.init_state(c, model, tx, mesh)
  fn = train.make_train_fn(model, tx, schedule, c, state.params, mesh,
                           jax.tree.map(lambda x: x.sharding, state))
  batch = pipeline.put_global(
      {'image': np.zeros((64, 8, 8, 1), np.uint8),
       'label': np.zeros((64,), np.int32)}, parallel.data_sharding(mesh))
  lowered = fn.lower(state, batch)
  opts = cpu_options.train_compiler_options('cpu', conv)
  assert _batch_windowed_reductions(lowered.compile(opts).as_text()) == []
  old = {'xla_cpu_experimental_ynn_fusion_type':
         'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'}
  assert _batch_windowed_reductions(lowered.compile(old).as_text())
