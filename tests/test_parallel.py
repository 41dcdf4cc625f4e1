"""Data/model parallelism: 1 vs 8 devices, pmap towers vs jit, global
BatchNorm, recompilation, and AlexNet's 2-D mesh memory.

pytest's own process has already initialised JAX with one CPU device, so the
multi-device checks run once, together, in a subprocess started with
--xla_force_host_platform_device_count=8 (this file is also that worker:
`python tests/test_parallel.py` prints one JSON line). The tests assert on it.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = 8


# --- the worker (runs with 8 fake CPU devices) -------------------------------

def _config(name, arg=None, **overrides):
  from jaxcnn.config_base import load_sibling
  c = load_sibling(os.path.join(ROOT, 'configs', 'x.py'), name, arg)
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def _batches(config, n, batch, seed=0):
  import numpy as np
  from jaxcnn.data import datasets
  info = datasets.get_info(config.dataset.name)
  rng = np.random.default_rng(seed)
  return [{'image': rng.integers(0, 256, (batch, *info.image_shape), np.uint8),
           'label': rng.integers(0, info.num_classes, (batch,), np.int32)}
          for _ in range(n)]


def _initial(config, mesh):
  """Host copy of experiment.init_state, and the fc6 spec it was made with.
  Runs of the same model share it: each init compile costs seconds."""
  import jax
  from jaxcnn import experiment
  model = experiment.build_model(config)
  tx, _ = experiment.make_optimizer(config, model, experiment.Plan(10, 100))
  state = experiment.init_state(config, model, tx, mesh)
  fc6 = state.params.get('fc6', {}).get('kernel')
  return jax.device_get(state), None if fc6 is None else str(fc6.sharding.spec)


def _train(config, mesh, batches, init, max_traces=0):
  """Runs the real make_train_fn over `batches` from the host state `init`;
  returns (host state, losses, train_fn, live state). max_traces > 0 wraps
  the step in chex.assert_max_traces."""
  import chex
  import jax
  from jaxcnn import experiment, parallel, steps, train
  from jaxcnn.data import pipeline
  model = experiment.build_model(config)
  tx, schedule = experiment.make_optimizer(config, model,
                                           experiment.Plan(10, 100))
  sharding = parallel.state_shardings(mesh, init, config.shard_params)
  state = jax.device_put(init, sharding)
  original = steps.train_step
  if max_traces:
    chex.clear_trace_counter()  # chex counts per function across wrappers
    steps.train_step = chex.assert_max_traces(original, n=max_traces)
  try:
    fn = train.make_train_fn(model, tx, schedule, config, state.params, mesh,
                             sharding)
  finally:
    steps.train_step = original
  losses = []
  for b in batches:
    state, m = fn(state, pipeline.put_global(b, parallel.data_sharding(mesh)))
    losses.append(float(m['loss']))
  return jax.device_get(state), losses, fn, state


def _max_diff(a, b):
  """Largest |a - b| over all leaves, relative to the largest |a| (>= 1)."""
  import jax
  import numpy as np
  pairs = [(np.asarray(x, np.float64), np.asarray(y, np.float64))
           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
  scale = max([1.0] + [float(np.max(np.abs(x))) for x, _ in pairs if x.size])
  return max([float(np.max(np.abs(x - y))) for x, y in pairs if x.size] +
             [0.0]) / scale


def _check(out, name, fn):
  t = time.perf_counter()
  try:
    out[name] = fn()
  except Exception as e:  # reported, so one failure doesn't hide the rest
    out[name] = {'error': f'{type(e).__name__}: {e}'[:2000]}
  out[name + '_seconds'] = round(time.perf_counter() - t, 1)


def _lenet_equivalence():
  import jax
  from jaxcnn import parallel
  one = parallel.make_mesh(1, jax.devices()[:1])
  many = parallel.make_mesh(1)
  # Dropout and flips on: the jit path draws the same random bits however
  # the batch is split (threefry is partitionable).
  rand = _config('quickstart', **{'model.dropout_rate': 0.3,
                                  'input.flip': True, 'batch_size': 32})
  batches = _batches(rand, 3, 32)
  init, _ = _initial(rand, many)
  s1, l1, _, _ = _train(rand, one, batches, init)
  s8, l8, fn, state = _train(rand, many, batches, init, max_traces=1)
  retrace = 'not caught'
  try:  # a new batch shape must retrace; the guard must notice
    small = _batches(rand, 1, 16)[0]
    from jaxcnn.data import pipeline
    fn(state, pipeline.put_global(small, parallel.data_sharding(many)))
  except AssertionError as e:
    retrace = 'caught: ' + str(e).splitlines()[0][:200]
  # Towers vs jit without randomness (towers draw per-device bits).
  det = _config('quickstart', batch_size=32)
  j8, lj, _, _ = _train(det, many, batches, init)
  p8, lp, _, _ = _train(_config('quickstart', batch_size=32, parallel='pmap'),
                        many, batches, init, max_traces=1)
  return {'devices': len(jax.devices()),
          'jit1_vs_jit8_params': _max_diff(s1.params, s8.params),
          'jit1_vs_jit8_loss': _max_diff(l1, l8), 'loss': l1,
          'steps_run_with_max_traces_1': len(batches), 'retrace': retrace,
          'pmap_vs_jit_params': _max_diff(j8.params, p8.params),
          'pmap_vs_jit_loss': _max_diff(lj, lp)}


def _compressed_towers():
  """A compression method's hooks ride on its tx; the pmap towers must keep
  them (masks applied, state carried) and match the jit path."""
  import jax
  import numpy as np
  from jaxcnn import experiment, parallel, train
  from jaxcnn.compress import session
  from jaxcnn.data import pipeline
  many = parallel.make_mesh(1)
  out = {}
  for mode in ('jit', 'pmap'):
    c = _config('quickstart', batch_size=32, parallel=mode, **{
        'compress.method': 'prune', 'compress.prune.sparsity': 0.5,
        'compress.prune.schedule': 'one_shot'})
    batches = _batches(c, 3, 32)
    model = experiment.build_model(c)
    tx, schedule = experiment.make_optimizer(c, model,
                                             experiment.Plan(10, 100))
    run = session.start(c, model, schedule,
                        experiment.init_state(c, model, tx, many), many)
    fn = train.make_train_fn(model, run.tx, schedule, c, run.state.params,
                             many)
    state = run.state
    for b in batches:
      state, _ = fn(state, pipeline.put_global(b, parallel.data_sharding(many)))
    out[mode] = jax.device_get(state)
  zeros = lambda s: [int(np.sum(np.asarray(v['kernel']) == 0))
                     for v in s.params.values()]
  return {'params': _max_diff(out['jit'].params, out['pmap'].params),
          'zeros_jit': zeros(out['jit']), 'zeros_pmap': zeros(out['pmap'])}


def _batchnorm_global():
  import jax
  from jaxcnn import parallel
  c = _config('resnet20_cifar', **{'model.depth': 8, 'model.width': 8,
                                   'batch_size': 32, 'input.flip': False,
                                   'input.random_crop': False, 'input.pad': 0})
  batches = _batches(c, 2, 32)
  init, _ = _initial(c, parallel.make_mesh(1))
  s1, l1, _, _ = _train(c, parallel.make_mesh(1, jax.devices()[:1]), batches,
                        init)
  s8, l8, _, _ = _train(c, parallel.make_mesh(1), batches, init)
  c.parallel = 'pmap'
  try:
    _train(c, parallel.make_mesh(1), batches[:1], init)
    pmap_bn = 'no error'
  except Exception as e:
    pmap_bn = f'{type(e).__name__}: {e}'
  # Per-device statistics would differ from global ones by this much:
  shard_means = batches[0]['image'].reshape(DEVICES, -1).mean(axis=1)
  return {'params': _max_diff(s1.params, s8.params),
          'batch_stats': _max_diff(s1.batch_stats, s8.batch_stats),
          'loss': _max_diff(l1, l8),
          'shard_mean_spread': float(shard_means.max() - shard_means.min()),
          'pmap_bn': pmap_bn}


def _alexnet_memory():
  import jax
  from jaxcnn import experiment, parallel
  from jaxcnn import state as state_lib
  out = {}
  # Full size, from shapes and shardings only (nothing allocated).
  for arg in ('default', 'two_tower'):
    c = _config('alexnet_imagenet', None if arg == 'default' else arg)
    model = experiment.build_model(c)
    tx, _ = experiment.make_optimizer(c, model, experiment.Plan(10, 100))
    create = functools.partial(state_lib.create, model, tx,
                               image_shape=experiment.input_shape(c),
                               use_ema=False)
    abstract = jax.eval_shape(create, jax.random.key(0))
    mesh = parallel.make_mesh(c.mesh.model)
    sh = parallel.state_shardings(mesh, abstract, c.shard_params)
    r = parallel.memory_report(abstract.params, sh.params)
    out[f'full_{arg}'] = {'mesh': dict(mesh.shape),
                          'params_total_bytes': r.total_bytes,
                          'params_per_device_bytes': r.per_device_bytes,
                          'state_per_device_bytes': parallel.memory_report(
                              abstract, sh).per_device_bytes}
  # Narrow AlexNet, real arrays: bytes read from addressable_shards, and one
  # train step on the 4x2 mesh equals the replicated 8x1 one.
  narrow = {'model.features': (16, 32, 48, 48, 32),
            'model.fc_features': (256, 256), 'input.resize': 75,
            'input.crop': 67, 'input.random_crop': False, 'input.flip': False,
            'model.dropout_rate': 0.0, 'batch_size': 16}
  flat = _config('alexnet_imagenet', **narrow)
  tower = _config('alexnet_imagenet', 'two_tower', **narrow)
  batches = _batches(flat, 1, 16)
  init, init_fc6_spec = _initial(tower, parallel.make_mesh(2))
  sf, _, _, live_f = _train(flat, parallel.make_mesh(1), batches, init)
  st, _, _, live_t = _train(tower, parallel.make_mesh(2), batches, init)
  bf = parallel.bytes_per_device(live_f.params)
  bt = parallel.bytes_per_device(live_t.params)
  fc6 = live_t.params['fc6']['kernel']
  out['narrow'] = {
      'replicated_bytes_per_device': max(bf.values()),
      'two_tower_bytes_per_device': max(bt.values()),
      'two_tower_abstract_bytes': parallel.abstract_bytes_per_device(
          live_t.params, jax.tree.map(lambda x: x.sharding, live_t.params)),
      'fc6_spec': str(fc6.sharding.spec), 'init_fc6_spec': init_fc6_spec,
      'fc6_shard_shape': list(fc6.addressable_shards[0].data.shape),
      'fc6_shape': list(fc6.shape),
      'step_params_diff': _max_diff(sf.params, st.params),
      'step_momentum_diff': _max_diff(sf.opt_state, st.opt_state)}
  return out


def _batch_error():
  from jaxcnn import train
  from jaxcnn.errors import ConfigError
  workdir = os.path.join(os.environ.get('TMPDIR', '/tmp'),
                         f'jaxcnn_batch_error_{os.getpid()}')
  try:
    train.train_and_evaluate(_config('quickstart', batch_size=12), workdir)
  except ConfigError as e:
    return {'message': str(e), 'workdir_created': os.path.exists(workdir)}
  return {'message': 'no error'}


def _benchmark_smoke():
  from benchmarks import scaling
  report = scaling.run(os.path.join(ROOT, 'configs', 'quickstart.py'),
                       [1, DEVICES], per_device_batch=4, steps=1, warmup=0)
  return {'rows': report['rows'], 'markdown': scaling.to_markdown(report)}


def worker_main():
  out = {}
  _check(out, 'batch_error', _batch_error)
  _check(out, 'benchmark', _benchmark_smoke)
  _check(out, 'lenet', _lenet_equivalence)
  _check(out, 'batchnorm', _batchnorm_global)
  _check(out, 'compress_pmap', _compressed_towers)
  _check(out, 'alexnet', _alexnet_memory)
  print('RESULT ' + json.dumps(out), flush=True)


# --- the tests ----------------------------------------------------------------

@pytest.fixture(scope='module')
def results():
  # LLVM -O0: compiling dominates these few-step runs (init 15 s -> 2 s on
  # 2 loaded cores); every compared run uses the same flags.
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={DEVICES} '
             '--xla_backend_optimization_level=0')
  proc = subprocess.run([sys.executable, os.path.abspath(__file__)], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=600)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
  assert proc.returncode == 0 and lines, proc.stderr[-3000:]
  return json.loads(lines[-1][len('RESULT '):])


def _ok(r):
  assert 'error' not in r, r.get('error')
  return r


def test_batch_not_divisible_fails_before_compilation(results):
  r = _ok(results['batch_error'])
  assert 'batch_size=12 must be a positive multiple of the 8' in r['message']
  assert not r['workdir_created']


def test_one_device_equals_eight_devices(results):
  r = _ok(results['lenet'])
  assert r['devices'] == DEVICES
  assert r['jit1_vs_jit8_params'] < 1e-5
  assert r['jit1_vs_jit8_loss'] < 1e-5


def test_pmap_towers_equal_jit(results):
  r = _ok(results['lenet'])
  assert r['pmap_vs_jit_params'] < 1e-5
  assert r['pmap_vs_jit_loss'] < 1e-5


def test_pmap_towers_keep_compression_hooks(results):
  r = _ok(results['compress_pmap'])
  assert r['params'] < 1e-5
  assert r['zeros_pmap'] == r['zeros_jit']
  assert sum(r['zeros_pmap']) > 0.4 * 61470  # half of LeNet-5's kernels


def test_no_recompilation_over_steps(results):
  r = _ok(results['lenet'])
  assert r['steps_run_with_max_traces_1'] == 3  # passed chex's guard
  assert r['retrace'].startswith('caught'), r['retrace']  # the guard bites


def test_batchnorm_statistics_are_global(results):
  r = _ok(results['batchnorm'])
  assert r['shard_mean_spread'] > 1.0  # per-device stats would differ
  assert r['batch_stats'] < 1e-5 and r['params'] < 1e-5 and r['loss'] < 1e-5
  assert 'BatchNorm statistics per device' in r['pmap_bn']


def test_two_tower_alexnet_halves_fc_memory(results):
  r = _ok(results['alexnet'])
  full, tower = r['full_default'], r['full_two_tower']
  assert tower['mesh'] == {'data': DEVICES // 2, 'model': 2}
  # fc6 + fc7 (37.7M + 16.8M of 56.9M params) are split in two.
  assert full['params_per_device_bytes'] == full['params_total_bytes']
  assert tower['params_per_device_bytes'] < 0.53 * full['params_total_bytes']
  assert tower['state_per_device_bytes'] < 0.53 * full[
      'state_per_device_bytes']
  n = r['narrow']
  for spec in (n['init_fc6_spec'], n['fc6_spec']):  # as made, as trained
    assert spec in ("P(None, 'model')", "PartitionSpec(None, 'model')")
  assert n['fc6_shard_shape'] == [n['fc6_shape'][0], n['fc6_shape'][1] // 2]
  assert n['two_tower_bytes_per_device'] == n['two_tower_abstract_bytes']
  assert n['two_tower_bytes_per_device'] < 0.7 * n[
      'replicated_bytes_per_device']
  assert n['step_params_diff'] < 1e-5 and n['step_momentum_diff'] < 1e-5


def test_scaling_benchmark_runs(results):
  r = _ok(results['benchmark'])  # structure only: timings are not tested
  assert [row['devices'] for row in r['rows']] == [1, DEVICES]
  assert [row['global_batch'] for row in r['rows']] == [4, 4 * DEVICES]
  assert r['rows'][0]['efficiency'] == 1.0
  assert all(row['images_per_sec'] > 0 for row in r['rows'])
  assert '| 8 | 8 x 1 | 32 |' in r['markdown']  # devices, mesh, batch


def test_parallel_config_is_checked_first():
  from jaxcnn import parallel
  from jaxcnn.config_base import base_config
  from jaxcnn.errors import ConfigError
  c = base_config()
  parallel.check_config(c)
  for field, value, match in [('parallel', 'ddp', 'not in'),
                              ('shard_params', '(', 'regex')]:
    bad = base_config()
    bad[field] = value
    with pytest.raises(ConfigError, match=match):
      parallel.check_config(bad)
  c.parallel, c.mesh.model = 'pmap', 2
  with pytest.raises(ConfigError, match='pure data parallelism'):
    parallel.check_config(c)
  with pytest.raises(ConfigError, match='does not divide'):
    parallel.make_mesh(3)


def test_leaf_spec_splits_output_features():
  from jax.sharding import PartitionSpec as P
  from jaxcnn.parallel import leaf_spec
  assert leaf_spec('params/fc6/kernel', (9216, 4096), 'fc6', 2) == P(
      None, 'model')
  assert leaf_spec('opt_state/0/trace/fc6/bias', (4096,), 'fc6', 2) == P(
      'model')
  assert leaf_spec('params/fc8/kernel', (4096, 10), 'fc6', 2) == P()
  assert leaf_spec('params/fc6/kernel', (9216, 4095), 'fc6', 2) == P()
  assert leaf_spec('params/fc6/kernel', (9216, 4096), 'fc6', 1) == P()


def test_pmean_gradients_keeps_the_optimizer_state():
  import jax
  import jax.numpy as jnp
  import optax
  from jaxcnn.parallel import pmean_gradients
  tx = optax.sgd(0.1, momentum=0.9)
  params = {'w': jnp.ones(3)}
  wrapped = pmean_gradients(tx, 'data')
  assert jax.tree.structure(wrapped.init(params)) == jax.tree.structure(
      tx.init(params))


if __name__ == '__main__':
  sys.path.insert(0, ROOT)
  worker_main()
