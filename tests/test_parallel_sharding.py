"""Sharding and model parallelism: mesh config checks, leaf_spec, and
AlexNet's two-tower (data x model) mesh halving fc memory on 8 devices.

The 8-device check runs in a subprocess, this file as a script (see
tests/multidevice.py). Data parallelism: test_parallel.py.
"""
from __future__ import annotations

import functools

import pytest

from tests import multidevice as md


# --- the worker (runs with 8 fake CPU devices) -------------------------------

def _alexnet_memory():
  import jax
  from jaxcnn import experiment, parallel
  from jaxcnn import state as state_lib
  out = {}
  # Full size, from shapes and shardings only (nothing allocated).
  for arg in ('default', 'two_tower'):
    c = md.make_config('alexnet_imagenet', None if arg == 'default' else arg)
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
  flat = md.make_config('alexnet_imagenet', **narrow)
  tower = md.make_config('alexnet_imagenet', 'two_tower', **narrow)
  batches = md.random_batches(flat, 1, 16)
  init, init_fc6_spec = md.initial_state(tower, parallel.make_mesh(2))
  sf, _, _, live_f = md.run_steps(flat, parallel.make_mesh(1), batches, init)
  st, _, _, live_t = md.run_steps(tower, parallel.make_mesh(2), batches, init)
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
      'step_params_diff': md.max_diff(sf.params, st.params),
      'step_momentum_diff': md.max_diff(sf.opt_state, st.opt_state)}
  return out


def worker_main():
  md.worker_main({'alexnet': _alexnet_memory})


# --- the tests ----------------------------------------------------------------

@pytest.fixture(scope='module')
def results():
  return md.run_worker(__file__)


def test_two_tower_alexnet_halves_fc_memory(results):
  r = md.ok(results['alexnet'])
  full, tower = r['full_default'], r['full_two_tower']
  assert tower['mesh'] == {'data': md.DEVICES // 2, 'model': 2}
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


if __name__ == '__main__':
  worker_main()
