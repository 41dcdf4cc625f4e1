"""End-to-end: real steps on tiny data, resume equivalence, eval, NaN stop."""
import contextlib
import io
import json
import os
import shutil

import chex
import jax
import numpy as np
import pytest

from jaxcnn import checkpoint, evaluate, experiment, parallel, train

from jaxcnn import runs
from jaxcnn.errors import ConfigError


def _final_state(config, workdir):
  template = experiment.state_template(config, parallel.make_mesh())
  state, step, _ = checkpoint.load_latest(
      os.path.join(workdir, 'checkpoints'), template)
  return state, step


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """One real 6-step run (EMA + flip on), shared by the tests below."""
  from configs import quickstart
  config = quickstart.get_config()
  config.num_train_steps, config.batch_size = 6, 32
  config.eval_batch_size, config.log_every_steps = 120, 2
  config.eval_every_steps, config.checkpoint_every_steps = 6, 3
  config.ema_decay = 0.99   # EMA, RNG and data position must all resume
  config.input.flip = True  # exercises the augmentation RNG stream
  workdir = str(tmp_path_factory.mktemp('trained'))
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    results = runs.train(config, workdir)
  return config, workdir, results, out.getvalue()


def test_train_runs_and_evaluates(trained):
  _, workdir, results, out = trained
  assert 'step 2, loss = ' in out and 'examples/sec; ' in out
  assert 'precision @ 1 = ' in out and '(ema)' in out
  assert 'model lenet5:' in out and '61,706 params' in out
  r = results['params']
  assert r['count'] == 360 and 0.0 <= r['precision@1'] <= 1.0
  assert set(results) == {'params', 'ema'}
  saved = json.load(open(os.path.join(workdir, 'final_metrics.json')))
  assert saved['step'] == 6
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))


def test_resume_follows_the_uninterrupted_trajectory(trained, tmp_path):
  config, straight, _, _ = trained
  resumed = str(tmp_path / 'resumed')
  shutil.copytree(straight, resumed)
  shutil.rmtree(os.path.join(resumed, 'checkpoints', '6'))  # "killed" after 3
  runs.train(config, resumed)
  a, step_a = _final_state(config, straight)
  b, step_b = _final_state(config, resumed)
  assert step_a == step_b == 6
  chex.assert_trees_all_close(a.params, b.params, rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_close(a.ema_params, b.ema_params, rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_close(a.opt_state, b.opt_state, rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_equal(a.rng, b.rng)


def test_device_data_run_equals_host_pipeline_run(trained, tmp_path):
  """input.device_data gathers the same rows inside the step: same run."""
  config, straight, results, _ = trained
  config = config.copy_and_resolve_references()
  config.input.device_data = True
  config.summary_every_steps = 5  # the summary path gathers its own batch
  workdir = str(tmp_path / 'device')
  with contextlib.redirect_stdout(io.StringIO()):
    got = runs.train(config, workdir)
  a, _ = _final_state(config, straight)
  b, step = _final_state(config, workdir)
  assert step == 6
  chex.assert_trees_all_close(a.params, b.params, rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_close(a.ema_params, b.ema_params, rtol=1e-6, atol=1e-6)
  assert got['params']['precision@1'] == results['params']['precision@1']


def test_eval_once_prints_precision(trained, capsys):
  config, workdir, _, _ = trained
  r = runs.evaluate(workdir, config, once=True)
  out = capsys.readouterr().out
  assert 'step 6: precision @ 1 = ' in out and '(ema weights)' in out
  assert r['params']['count'] == 360


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tiny_config, tmp_path):
  tiny_config.optim.learning_rate = 1e30
  tiny_config.optim.schedule = 'constant'
  with pytest.raises(train.NonFiniteError, match='NaN/Inf at step'):
    runs.train(tiny_config, str(tmp_path))
  # Whatever was saved was saved before the blow-up, and still loads.
  state, step = _final_state(tiny_config, str(tmp_path))
  if step is not None:
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


def test_skip_nonfinite_updates_keeps_params_finite(tiny_config, tmp_path):
  tiny_config.optim.learning_rate = 1e30
  tiny_config.optim.schedule = 'constant'
  tiny_config.skip_nonfinite_updates = True
  runs.train(tiny_config, str(tmp_path))
  state, step = _final_state(tiny_config, str(tmp_path))
  assert step == 6
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize('field,value,match', [
    ('model.name', 'lenet6', 'unknown model .*valid names'),
    ('dataset.name', 'mnist2', 'unknown dataset .*valid names'),
    ('batch_size', 0, 'batch_size must be > 0'),
    ('optim.learning_rate', -1.0, 'learning_rate must be > 0'),
    ('input.crop', 48, 'larger than the 40x40'),
    ('optim.schedule', 'linear', 'optim.schedule'),
])
def test_bad_config_is_rejected_before_work(tiny_config, tmp_path, field,
                                            value, match):
  node = tiny_config
  *parents, leaf = field.split('.')
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ConfigError, match=match):
    runs.train(tiny_config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')  # nothing created, nothing lost


def test_l2_regex_matching_nothing_is_rejected(tiny_config, tmp_path):
  tiny_config.l2.mode, tiny_config.l2.rate = 'loss', 0.1
  tiny_config.l2.include = 'local3'
  with pytest.raises(ConfigError, match='matches no kernel.*C1/kernel'):
    runs.train(tiny_config, str(tmp_path))


# A global batch not divisible by the device count: tests/test_parallel.py
# checks it on 8 real (fake-CPU) devices, before any compilation.
