"""xla_cpu_conv='onednn_bf16': oneDNN convolutions on bf16-rounded inputs.

Classes checked: on a CPU with native bf16 (AVX512_BF16, AMX), every
geometry's forward and both gradients equal XLA's float32 convolution of the
same inputs rounded to bf16 (products of bf16 values are exact in float32,
so only the summation order differs); the train step the CLI builds calls the
bf16 kernels, keeps parameters float32 and stays near the float32 step; the
option is refused with its reason where it cannot run (no native bf16,
several devices) and GPU/TPU lowerings carry no oneDNN call; switching into
or out of it on resume is refused like any change of the numerics, while the
float32 libraries stay interchangeable; a workdir trained with a library
another machine lacks (bf16, oneDNN itself) still opens there for eval.
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxcnn import parallel, workdir
from jaxcnn.errors import WorkdirError
from jaxcnn.ops import conv, cpu_options
from tests import cli_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NHWC = ('NHWC', 'HWIO', 'NHWC')


@pytest.fixture(scope='module')
def bf16():
  st = conv.onednn_bf16_status()
  if not st.ok:
    pytest.skip(f'oneDNN bf16 unavailable: {st.reason}')
  return st


def _round(a):
  return a.astype(jnp.bfloat16).astype(jnp.float32)


GEOMETRIES = [  # (x shape, w shape, strides, padding)
    ((2, 12, 12, 8), (5, 5, 8, 16), (1, 1), 'SAME'),
    ((3, 9, 11, 3), (3, 3, 3, 4), (2, 2), 'SAME'),
    ((1, 32, 32, 3), (11, 11, 3, 6), (4, 4), ((2, 1), (0, 3))),
    ((5, 7, 7, 16), (1, 1, 16, 8), (1, 1), 'VALID'),
    ((2, 8, 8, 64), (3, 3, 64, 32), (1, 2), ((1, 1), (0, 0))),
    ((4, 16, 16, 64), (5, 5, 64, 48), (1, 1), ((2, 2), (2, 2))),
]


@pytest.mark.parametrize('xs,ws,strides,padding', GEOMETRIES)
def test_equals_float32_conv_of_rounded_inputs(bf16, xs, ws, strides,
                                               padding):
  rng = np.random.default_rng(sum(xs) + sum(ws))
  x = jnp.asarray(rng.standard_normal(xs, np.float32))
  w = jnp.asarray(rng.standard_normal(ws, np.float32) * 0.3)
  kw = dict(window_strides=strides, padding=padding, dimension_numbers=NHWC)
  ours = lambda a, b: conv.conv_general_dilated(a, b, **kw, bf16=True)  # pylint: disable=unnecessary-lambda-assignment
  ref = lambda a, b: lax.conv_general_dilated(a, b, **kw)  # pylint: disable=unnecessary-lambda-assignment
  y, vjp = jax.vjp(jax.jit(ours), x, w)
  y_ref, vjp_ref = jax.vjp(ref, _round(x), _round(w))
  g = jnp.asarray(rng.standard_normal(y.shape, np.float32))
  assert y.dtype == jnp.float32
  scale = float(jnp.abs(y_ref).max())
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5 * scale)
  for got, want in zip(vjp(g), vjp_ref(_round(g))):
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5,
                               atol=1e-5 * float(jnp.abs(want).max()))
  # ...and it is really rounded: not the float32 result.
  assert float(jnp.abs(y - ref(x, w)).max()) > 1e-4 * scale
  hlo = jax.jit(ours).lower(x, w).as_text()
  assert 'jaxcnn_dnnl_conv_forward' in hlo and 'bf16 = 1' in hlo


@pytest.mark.parametrize('platform', ['cuda', 'tpu'])
def test_accelerator_lowering_is_xla_float32_conv(platform):
  x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  w = jax.ShapeDtypeStruct((3, 3, 3, 4), jnp.float32)
  f = jax.jit(jax.grad(lambda a, b: jnp.sum(conv.conv_general_dilated(
      a, b, (1, 1), 'SAME', dimension_numbers=NHWC, bf16=True)),
      argnums=(0, 1)))
  text = jax.export.export(f, platforms=[platform])(x, w).mlir_module()
  assert 'jaxcnn_dnnl' not in text and 'xbf16>' not in text  # f32 only
  assert 'stablehlo.convolution' in text


def test_train_step_runs_bf16_kernels_near_float32(bf16, tiny_config):
  """experiment.build + make_train_fn as the CLI: the step calls the bf16
  kernels, parameters stay float32, and three steps stay within 2% of the
  float32 oneDNN step's loss."""
  out = {lib: cli_step.run_steps(tiny_config, lib, 3, pixel_max=255)
         for lib in ('onednn', 'onednn_bf16')}
  assert 'bf16 = 1' in out['onednn_bf16'][0]
  assert 'bf16 = 1' not in out['onednn'][0]
  np.testing.assert_allclose(out['onednn_bf16'][1], out['onednn'][1],
                             rtol=0.02)
  assert out['onednn_bf16'][1] != out['onednn'][1]
  for leaf in jax.tree.leaves(out['onednn_bf16'][2].params):
    assert leaf.dtype == jnp.float32


def test_refused_where_it_cannot_run():
  """Every refusal names its reason: no native bf16 on this CPU (checked
  against what oneDNN reports), another platform, several devices."""
  st = conv.onednn_status()
  one = parallel.make_mesh(1, jax.devices()[:1])
  if st.ok and not st.native_bf16:
    with pytest.raises(ValueError, match='no native bf16'):
      cpu_options.model_conv('onednn_bf16', one)
    with pytest.raises(ValueError, match='conv impl onednn_bf16'):
      conv.conv_fn('onednn_bf16')
    assert 'no native bf16' in cpu_options.describe('onednn_bf16', one)
  elif st.ok:
    assert cpu_options.model_conv('onednn_bf16', one) == 'onednn_bf16'
    assert 'bf16 inputs, float32 sums' in cpu_options.describe(
        'onednn_bf16', one)
  assert 'gpu' in cpu_options.onednn_unavailable('onednn_bf16', 'gpu', 1)
  assert 'one-device' in cpu_options.onednn_unavailable('onednn_bf16',
                                                        'cpu', 2)
  if len(jax.devices()) >= 2:
    two = parallel.make_mesh(2, jax.devices()[:2])
    for lib in ('onednn_bf16', 'onednn'):
      with pytest.raises(ValueError, match=f'xla_cpu_conv={lib}'):
        cpu_options.model_conv(lib, two)
      assert cpu_options.model_conv(lib, two, strict=False) == 'xla'


@pytest.mark.parametrize('old,new,refused', [
    ('onednn', 'onednn_bf16', True), ('onednn_bf16', 'auto', True),
    ('eigen', 'onednn_bf16', True), ('auto', 'eigen', False),
    ('onednn', 'ynnpack', False), ('onednn_bf16', 'onednn_bf16', False)])
def test_resume_across_the_bf16_boundary(tmp_path, tiny_config, old, new,
                                         refused):
  c = tiny_config.copy_and_resolve_references()
  c.xla_cpu_conv = old
  workdir.write_config(c, str(tmp_path))
  c.xla_cpu_conv = new
  if not refused:
    workdir.check_resume(str(tmp_path), c, 5)
    return
  with pytest.raises(WorkdirError, match='xla_cpu_conv'):
    workdir.check_resume(str(tmp_path), c, 5)
  c.resume_override = 'xla_cpu_conv'
  workdir.check_resume(str(tmp_path), c, 5)


@pytest.mark.parametrize('isa', ['AVX2', 'AVX512_CORE'])
def test_cpu_without_native_bf16_is_refused(isa):
  """oneDNN capped below AVX512_BF16 (ONEDNN_MAX_CPU_ISA, as on a CPU
  without it): the bf16 option is refused with the reason, float32 oneDNN
  still runs and 'auto' still picks it."""
  code = textwrap.dedent('''
      import jax
      from jaxcnn import parallel
      from jaxcnn.ops import conv, cpu_options
      st = conv.onednn_status()
      if not st.ok:
        print('skip', st.reason); raise SystemExit
      assert not st.native_bf16, st
      assert 'no native bf16' in conv.onednn_bf16_status().reason
      mesh = parallel.make_mesh(1, jax.devices()[:1])
      assert cpu_options.model_conv('auto', mesh) == 'onednn'
      try:
        cpu_options.model_conv('onednn_bf16', mesh)
      except ValueError as e:
        assert 'no native bf16' in str(e), e
      else:
        raise AssertionError('onednn_bf16 accepted')
      print('ok')''')
  env = {**os.environ, 'ONEDNN_MAX_CPU_ISA': isa}
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  if out.stdout.startswith('skip'):
    pytest.skip(out.stdout)
  assert out.stdout.strip().endswith('ok'), out.stdout


def _cli(args, env_extra=None, timeout=300):
  env = {**os.environ, **(env_extra or {})}
  return subprocess.run([sys.executable, '-m', 'jaxcnn.main', *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout)


@pytest.mark.parametrize('trained_with,reader_env', [
    ('onednn_bf16', {'ONEDNN_MAX_CPU_ISA': 'AVX2'}),
    ('onednn', {'JAXCNN_DNNL_ROOT': '/nonexistent-dnnl-prefix'}),
])
def test_workdir_opens_where_its_conv_library_cannot_run(tmp_path,
                                                         trained_with,
                                                         reader_env):
  """A run trained with a machine-specific conv library is evaluated on a
  machine without it (the real CLI, --mode=eval_once): readers fall back
  to what 'auto' picks there, while training there is refused."""
  if trained_with == 'onednn_bf16':
    if not conv.onednn_bf16_status().ok:
      pytest.skip('needs native bf16 to train the run')
  elif not conv.onednn_status().ok:
    pytest.skip('needs oneDNN to train the run')
  wd = str(tmp_path / 'run')
  out = _cli(['--config', 'configs/quickstart.py', '--workdir', wd,
              '--config.num_train_steps=2', '--config.end_plots=False',
              f'--config.xla_cpu_conv={trained_with}'])
  assert out.returncode == 0, out.stderr[-2000:]
  trained = json.load(open(os.path.join(wd, 'final_metrics.json')))
  out = _cli(['--workdir', wd, '--mode=eval_once'], reader_env)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'precision @ 1' in out.stdout
  # The same step's accuracy as the trainer's own final evaluation, up to
  # the conv arithmetic (bf16 vs float32) flipping an argmax or two.
  got = float(re.search(r'precision @ 1 = ([0-9.]+)', out.stdout).group(1))
  want = trained['params']['precision@1']
  assert abs(got - want) <= 0.02, (got, want)
  resumed = _cli(['--config', 'configs/quickstart.py', '--workdir', wd,
                  '--config.num_train_steps=4', '--config.end_plots=False',
                  f'--config.xla_cpu_conv={trained_with}',
                  '--config.resume_override=num_train_steps'], reader_env)
  assert resumed.returncode != 0
  assert f'xla_cpu_conv={trained_with}' in resumed.stderr
