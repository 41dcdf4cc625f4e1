"""Data parallelism on 8 devices: 1 vs 8 devices, pmap towers vs jit (with
a compression method's hooks), global BatchNorm, no recompilation, batch
divisibility, the scaling benchmark; and pmean_gradients.

The 8-device checks run in one subprocess, this file as a script (see
tests/multidevice.py). Sharding and model parallelism:
test_parallel_sharding.py.
"""
from __future__ import annotations

import os

import pytest

from tests import multidevice as md
from jaxcnn import runs


# --- the worker (runs with 8 fake CPU devices) -------------------------------

def _lenet_equivalence():
  import jax
  from jaxcnn import parallel
  one = parallel.make_mesh(1, jax.devices()[:1])
  many = parallel.make_mesh(1)
  # Dropout and flips on: the jit path draws the same random bits however
  # the batch is split (threefry is partitionable).
  rand = md.make_config('quickstart', **{'model.dropout_rate': 0.3,
                                         'input.flip': True, 'batch_size': 32})
  batches = md.random_batches(rand, 3, 32)
  init, _ = md.initial_state(rand, many)
  s1, l1, _, _ = md.run_steps(rand, one, batches, init)
  s8, l8, fn, state = md.run_steps(rand, many, batches, init, max_traces=1)
  retrace = 'not caught'
  try:  # a new batch shape must retrace; the guard must notice
    small = md.random_batches(rand, 1, 16)[0]
    from jaxcnn.data import pipeline
    fn(state, pipeline.put_global(small, parallel.data_sharding(many)))
  except AssertionError as e:
    retrace = 'caught: ' + str(e).splitlines()[0][:200]
  # Towers vs jit without randomness (towers draw per-device bits).
  det = md.make_config('quickstart', batch_size=32,
                       **{'input.random_crop': False})
  j8, lj, _, _ = md.run_steps(det, many, batches, init)
  pmap = md.make_config('quickstart', batch_size=32, parallel='pmap',
                        **{'input.random_crop': False})
  p8, lp, _, _ = md.run_steps(pmap, many, batches, init, max_traces=1)
  d8, ld, _, _ = md.run_steps(det, many, batches, init, device_data=True)
  dp8, ldp, _, _ = md.run_steps(pmap, many, batches, init, device_data=True)
  return {'devices': len(jax.devices()),
          'jit1_vs_jit8_params': md.max_diff(s1.params, s8.params),
          'jit1_vs_jit8_loss': md.max_diff(l1, l8), 'loss': l1,
          'steps_run_with_max_traces_1': len(batches), 'retrace': retrace,
          'pmap_vs_jit_params': md.max_diff(j8.params, p8.params),
          'pmap_vs_jit_loss': md.max_diff(lj, lp),
          'device_data_vs_host_params': md.max_diff(j8.params, d8.params),
          'device_data_vs_host_loss': md.max_diff(lj, ld),
          'device_data_pmap_vs_host_params': md.max_diff(p8.params, dp8.params)}


def _compressed_towers():
  """A compression plugin reaches the step explicitly and its state rides
  in the optimizer state; the pmap towers must keep both (masks applied,
  state carried) and match the jit path."""
  import jax
  import numpy as np
  from jaxcnn import experiment, parallel, train
  from jaxcnn.compress import plugins as compress_plugins
  from jaxcnn.data import pipeline
  many = parallel.make_mesh(1)
  out = {}
  for mode in ('jit', 'pmap'):
    c = md.make_config('quickstart', batch_size=32, parallel=mode, **{
        'compress.method': 'prune', 'compress.prune.sparsity': 0.5,
        'compress.prune.schedule': 'one_shot', 'input.random_crop': False})
    batches = md.random_batches(c, 3, 32)
    plugins = compress_plugins.from_config(c)
    run = experiment.build(c, many, plugins, experiment.Plan(10, 100))
    fn = train.make_train_fn(run.model, run.tx, run.schedule, c,
                             run.state.params, many, plugins=plugins)
    state = run.state
    for b in batches:
      state, _ = fn(state, pipeline.put_global(b, parallel.data_sharding(many)))
    out[mode] = jax.device_get(state)
  zeros = lambda s: [int(np.sum(np.asarray(v['kernel']) == 0))
                     for v in s.params.values()]
  return {'params': md.max_diff(out['jit'].params, out['pmap'].params),
          'zeros_jit': zeros(out['jit']), 'zeros_pmap': zeros(out['pmap'])}


def _batchnorm_global():
  import jax
  from jaxcnn import parallel
  c = md.make_config('resnet20_cifar', **{
      'model.depth': 8, 'model.width': 8, 'batch_size': 32,
      'input.flip': False, 'input.random_crop': False, 'input.pad': 0})
  batches = md.random_batches(c, 2, 32)
  init, _ = md.initial_state(c, parallel.make_mesh(1))
  s1, l1, _, _ = md.run_steps(c, parallel.make_mesh(1, jax.devices()[:1]),
                              batches, init)
  s8, l8, _, _ = md.run_steps(c, parallel.make_mesh(1), batches, init)
  c.parallel = 'pmap'
  try:
    md.run_steps(c, parallel.make_mesh(1), batches[:1], init)
    pmap_bn = 'no error'
  except Exception as e:
    pmap_bn = f'{type(e).__name__}: {e}'
  # Per-device statistics would differ from global ones by this much:
  shard_means = batches[0]['image'].reshape(md.DEVICES, -1).mean(axis=1)
  return {'params': md.max_diff(s1.params, s8.params),
          'batch_stats': md.max_diff(s1.batch_stats, s8.batch_stats),
          'loss': md.max_diff(l1, l8),
          'shard_mean_spread': float(shard_means.max() - shard_means.min()),
          'pmap_bn': pmap_bn}


def _batch_error():
  from jaxcnn import train
  from jaxcnn.errors import ConfigError
  workdir = os.path.join(os.environ.get('TMPDIR', '/tmp'),
                         f'jaxcnn_batch_error_{os.getpid()}')
  try:
    runs.train(md.make_config('quickstart', batch_size=12),
                             workdir)
  except ConfigError as e:
    return {'message': str(e), 'workdir_created': os.path.exists(workdir)}
  return {'message': 'no error'}


def _benchmark_smoke():
  from benchmarks import scaling
  report = scaling.run(os.path.join(md.ROOT, 'configs', 'quickstart.py'),
                       [1, md.DEVICES], per_device_batch=4, steps=1, warmup=0)
  return {'rows': report['rows'], 'markdown': scaling.to_markdown(report)}


def worker_main():
  md.worker_main({'batch_error': _batch_error, 'benchmark': _benchmark_smoke,
                  'lenet': _lenet_equivalence, 'batchnorm': _batchnorm_global,
                  'compress_pmap': _compressed_towers})


# --- the tests ----------------------------------------------------------------

@pytest.fixture(scope='module')
def results():
  return md.run_worker(__file__)


def test_batch_not_divisible_fails_before_compilation(results):
  r = md.ok(results['batch_error'])
  assert 'batch_size=12 must be a positive multiple of the 8' in r['message']
  assert not r['workdir_created']


def test_one_device_equals_eight_devices(results):
  r = md.ok(results['lenet'])
  assert r['devices'] == md.DEVICES
  assert r['jit1_vs_jit8_params'] < 1e-5
  assert r['jit1_vs_jit8_loss'] < 1e-5


def test_pmap_towers_equal_jit(results):
  r = md.ok(results['lenet'])
  assert r['pmap_vs_jit_params'] < 1e-5
  assert r['pmap_vs_jit_loss'] < 1e-5


def test_device_resident_data_equals_host_batches(results):
  r = md.ok(results['lenet'])  # same rows gathered on 8 devices, jit and pmap
  assert r['device_data_vs_host_params'] == 0.0
  assert r['device_data_vs_host_loss'] == 0.0
  assert r['device_data_pmap_vs_host_params'] == 0.0


def test_pmap_towers_keep_compression_hooks(results):
  r = md.ok(results['compress_pmap'])
  assert r['params'] < 1e-5
  assert r['zeros_pmap'] == r['zeros_jit']
  assert sum(r['zeros_pmap']) > 0.4 * 61470  # half of LeNet-5's kernels


def test_no_recompilation_over_steps(results):
  r = md.ok(results['lenet'])
  assert r['steps_run_with_max_traces_1'] == 3  # passed chex's guard
  assert r['retrace'].startswith('caught'), r['retrace']  # the guard bites


def test_batchnorm_statistics_are_global(results):
  r = md.ok(results['batchnorm'])
  assert r['shard_mean_spread'] > 1.0  # per-device stats would differ
  assert r['batch_stats'] < 1e-5 and r['params'] < 1e-5 and r['loss'] < 1e-5
  assert 'BatchNorm statistics per device' in r['pmap_bn']


def test_scaling_benchmark_runs(results):
  r = md.ok(results['benchmark'])  # structure only: timings are not tested
  assert [row['devices'] for row in r['rows']] == [1, md.DEVICES]
  assert [row['global_batch'] for row in r['rows']] == [4, 4 * md.DEVICES]
  assert r['rows'][0]['efficiency'] == 1.0
  assert all(row['images_per_sec'] > 0 for row in r['rows'])
  assert '| 8 | 8 x 1 | 32 |' in r['markdown']  # devices, mesh, batch


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
  worker_main()
