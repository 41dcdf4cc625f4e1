"""Knowledge distillation: the loss against hand-computed values, gradients
reaching the student only, and a frozen teacher checked before compiling."""
import functools
import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import losses, models, steps, train

from jaxcnn import runs
from jaxcnn import workdir as run_dir
from jaxcnn.compress import distill
from jaxcnn.data import augment
from jaxcnn.errors import CheckpointError, ConfigError
from jaxcnn.state import TrainState


def test_kd_loss_hand_computed():
  s = jnp.array([[2.0, 0.0, -1.0]])
  t = jnp.array([[1.0, 3.0, 0.0]])
  temp, lam = 2.0, 0.25
  # Soft targets softmax(t/2) = softmax([0.5, 1.5, 0]), by hand:
  e = np.exp([0.5, 1.5, 0.0])
  p = e / e.sum()
  log_q = np.array([1.0, 0.0, -0.5]) - np.log(np.exp([1.0, 0.0, -0.5]).sum())
  hard = -(np.array([2.0, 0.0, -1.0]) - np.log(np.exp([2.0, 0, -1]).sum()))[0]
  want = lam * hard + (1 - lam) * 4.0 * -(p * log_q).sum()
  got = losses.distillation_loss(s, t, jnp.array([0]), temp, lam, 'kd')
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Logit matching: 1/2 ||s/T - t/T||^2 = 1/2 (0.25 + 2.25 + 0.25) = 1.375.
  got = losses.distillation_loss(s, t, jnp.array([0]), temp, lam, 'logits')
  np.testing.assert_allclose(got, lam * hard + (1 - lam) * 4.0 * 1.375,
                             rtol=1e-6)
  with pytest.raises(ValueError, match='distill.loss'):
    losses.distillation_loss(s, t, jnp.array([0]), temp, lam, 'l2')


def np_params(model, seed, shape=(8, 8, 1)):
  """Random numpy params of the model's shapes: eval_shape compiles
  nothing, where model.init would compile the PRNG (seconds on 2 cores)."""
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, *shape))))['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: (0.3 * rng.standard_normal(x.shape)).astype(
      np.float32), shapes)


def _tiny_state(params, tx):
  return TrainState(step=np.zeros((), np.int32), params=params, batch_stats={},
                    opt_state=tx.init(params), ema_params={},
                    rng=np.zeros(2, np.uint32))


def _kd_plugin(temperature, hard_weight, loss='kd', joint=False,
               teacher_model=None):
  """The distillation plugin of a config with these settings; a frozen
  teacher's model set directly (its variables are the step's argument)."""
  from jaxcnn.config_base import base_config
  c = base_config()
  c.distill.temperature, c.distill.hard_weight = temperature, hard_weight
  c.distill.loss = loss
  c.distill.mode = 'joint' if joint else 'frozen'
  c.distill.teacher_model = 'mlp'
  plugin = distill.DistillPlugin(c, restore_only=True)
  if teacher_model is not None:
    plugin.teacher = distill.Teacher(teacher_model, None, None, '', 0,
                                     'params')
  return plugin


def _step_fn(model, tx, plugin):
  options = steps.StepOptions(input_spec=augment.InputSpec(normalize='unit'))
  return jax.jit(functools.partial(
      steps.train_step, model=model, tx=tx, schedule=lambda s: 0.1,
      options=options, l2_mask=None, plugins=(plugin,)))


def _batch(n=16):
  rng = np.random.default_rng(0)
  return {'image': rng.integers(0, 255, (n, 8, 8, 1), np.uint8),
          'label': rng.integers(0, 10, (n,), np.int32)}


def test_frozen_teacher_not_updated_and_changes_the_student_update():
  import optax
  student = models.get_model('mlp', hidden=(16,))
  teacher_model = models.get_model('mlp', hidden=(32,))
  tx = optax.sgd(0.1)
  teacher = {'params': np_params(teacher_model, 1), 'batch_stats': {}}
  before = jax.tree.map(np.array, teacher)
  state = _tiny_state(np_params(student, 0), tx)
  kd = _kd_plugin(temperature=4.0, hard_weight=0.0,
                  teacher_model=teacher_model)
  step = _step_fn(student, tx, kd)
  new, m = step(state, _batch(), teacher)
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, teacher), before)
  assert jax.tree.structure(new.params) == jax.tree.structure(state.params)
  # The teacher is a jit argument, not a constant: other teacher weights,
  # same compiled step, a different student update.
  other = jax.tree.map(lambda w: 3.0 * w, teacher)
  new2, _ = step(state, _batch(), other)
  assert step._cache_size() == 1
  diff = jax.tree.map(lambda a, b: np.max(np.abs(np.asarray(a - b))),
                      new.params, new2.params)
  assert max(jax.tree.leaves(diff)) > 1e-4
  assert np.isfinite(float(m['loss']))


def test_joint_mode_kd_term_gives_teacher_no_gradient():
  import optax
  student = models.get_model('mlp', hidden=(16,))
  pair = distill.JointModel(student, models.get_model('mlp', hidden=(32,)))
  params = np_params(pair, 0)
  assert set(params) == {'student', 'teacher'}
  x = _batch()['image'].astype(np.float32) / 255
  y = _batch()['label']

  def kd_only(p):
    s, t = pair.apply({'params': p}, x, method='both')
    return losses.distillation_loss(s, t, y, 3.0, 0.0)
  g = jax.jit(jax.grad(kd_only))(params)
  g = jax.tree.map(np.asarray, g)
  assert all(np.all(v == 0) for v in jax.tree.leaves(g['teacher']))
  assert max(np.max(np.abs(v)) for v in jax.tree.leaves(g['student'])) > 0
  # And the joint train step updates both halves (the teacher by its CE).
  tx = optax.sgd(0.1)
  state = _tiny_state(params, tx)
  kd = _kd_plugin(3.0, 0.5, 'kd', joint=True)
  new, _ = _step_fn(pair, tx, kd)(state, _batch())
  for half in ('student', 'teacher'):
    assert not np.allclose(new.params[half]['fc1']['kernel'],
                           params[half]['fc1']['kernel'])


def write_workdir(c, d, params, step):
  """A workdir as training leaves it: config.json + an orbax checkpoint
  (numpy params; readers use params / ema_params / batch_stats only)."""
  from jaxcnn import checkpoint
  ckpt = checkpoint.Checkpointer(os.path.join(d, 'checkpoints'),
                                 async_save=False, writer=True)
  ckpt.save(step, TrainState(step=np.asarray(step, np.int32), params=params,
                             batch_stats={}, opt_state={}, ema_params={},
                             rng=np.zeros(2, np.uint32)))
  ckpt.close()
  run_dir.write_config(c, d)


@pytest.fixture(scope='module')
def teacher_dir(tmp_path_factory):
  """A teacher workdir (MLP on the digits, checkpoint at step 2)."""
  from configs import quickstart
  c = quickstart.get_config()
  c.model.name = 'mlp_small'
  d = str(tmp_path_factory.mktemp('teacher'))
  write_workdir(c, d, np_params(models.get_model('mlp_small'), 2,
                                (32, 32, 1)), 2)
  return d


def _student(teacher_dir):
  from configs import quickstart
  c = quickstart.get_config()
  c.model.name = 'mlp'
  c.model.hidden = (8,)
  c.distill.teacher_workdir = teacher_dir
  return c


def test_frozen_distillation_run_leaves_teacher_alone(teacher_dir, tmp_path):
  c = _student(teacher_dir)
  c.num_train_steps = 2
  c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 2
  c.write_summaries = False
  ck = os.path.join(teacher_dir, 'checkpoints')
  listing = sorted(os.listdir(ck))
  res = runs.train(c, str(tmp_path / 'student'))
  assert 0.0 <= res['params']['precision@1'] <= 1.0
  assert sorted(os.listdir(ck)) == listing
  t = distill.load_teacher(c)
  assert t.step == 2 and t.config.model.name == 'mlp_small'


def test_teacher_problems_rejected_before_compiling(teacher_dir, tmp_path):
  c = _student(teacher_dir)
  # config.json says another model than the checkpoint holds.
  bad = str(tmp_path / 'other_model')
  shutil.copytree(teacher_dir, bad)
  cfg = json.load(open(os.path.join(bad, 'config.json')))
  cfg['model']['name'] = 'mlp_large'
  json.dump(cfg, open(os.path.join(bad, 'config.json'), 'w'))
  c.distill.teacher_workdir = bad
  with pytest.raises(CheckpointError, match=r"does not fit model 'mlp_large' "
                     r"named by its config.json \(params fc1/bias: the model "
                     r"needs \(1200,\), the checkpoint has \(64,\)\)"):
    runs.train(c, str(tmp_path / 'x'))
  # No checkpoint at all.
  shutil.rmtree(os.path.join(bad, 'checkpoints'))
  with pytest.raises(CheckpointError, match='distill.teacher_workdir: '
                     'no checkpoint in'):
    distill.load_teacher(c)
  # No config.json: the teacher model is unknown.
  os.remove(os.path.join(bad, 'config.json'))
  with pytest.raises(ConfigError, match='has no config.json, so the teacher '
                     'model is unknown'):
    distill.load_teacher(c)
  # The teacher was trained on other inputs.
  c = _student(teacher_dir)
  c.input.resize = 16
  with pytest.raises(ConfigError, match=r'was trained on different inputs: '
                     r'input.resize=40 \(student: 16\)'):
    distill.load_teacher(c)
  c = _student(teacher_dir)
  c.distill.temperature = 0.0
  with pytest.raises(ConfigError, match='distill.temperature must be > 0'):
    distill.load_teacher(c)


def test_cli_builds_a_student_config(teacher_dir):
  import argparse
  from jaxcnn.compress.__main__ import build_config
  args = argparse.Namespace(
      workdir=teacher_dir, method='distill', output='unused', epochs=1.0,
      lr_scale=None, set=['distill.temperature=3.0'], student='mlp')
  c = build_config(args)
  assert c.model.to_dict() == {'name': 'mlp'}
  assert c.distill.teacher_workdir == os.path.abspath(teacher_dir)
  assert (c.init_from, c.compress.method) == ('', '')
  assert c.distill.temperature == 3.0 and c.optim.learning_rate == 0.05
  assert c.l2.include == '.*'  # not the teacher's layer names
  assert distill.load_teacher(c).config.model.name == 'mlp_small'
