"""Out-of-range config values are ConfigErrors from experiment.validate,
before any data or compile: never a traceback deep in training, a hang, or a
silent coercion. Every shipped config (and each :arg variant) still passes.
"""
import glob
import os
import re
import subprocess
import sys
import time

import pytest

from jaxcnn import experiment
from jaxcnn.config_base import load_sibling
from jaxcnn.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NAN, INF = float('nan'), float('inf')


def _quickstart():
  """The quickstart with the fields the cases below build on pinned, so
  retuning the quickstart cannot turn a rejection into a pass."""
  c = load_sibling(os.path.join(ROOT, 'configs', 'x.py'), 'quickstart')
  c.input.pad, c.input.resize, c.input.crop = 0, 32, 0
  c.input.random_crop = False
  c.l2.mode, c.l2.rate = 'none', 0.0
  return c


def _set(config, field, value):
  *parents, leaf = field.split('.')
  for p in parents:
    config = config[p]
  with config.unlocked():  # model overrides such as model.dropout_rate
    config[leaf] = value


def _rejects(changes, field, value, valid=None):
  c = _quickstart()
  for k, v in changes.items():
    _set(c, k, v)
  with pytest.raises(ConfigError) as e:
    experiment.validate(c)
  msg = str(e.value)
  assert '\n' not in msg and msg.startswith('invalid config: ')
  assert field in msg, msg
  assert str(value) in msg, msg
  if valid:
    assert valid in msg, msg


# (field, bad value, text of the valid range that the message must give)
OUT_OF_RANGE = [
    # counts
    ('num_epochs', -1.0, '>= 0.0'),
    ('num_train_steps', -2, '>= -1'),
    ('log_every_steps', -1, '>= 0'),
    ('eval_every_steps', -1, '>= 0'),
    ('checkpoint_every_steps', -5, '>= 0'),
    ('summary_every_steps', -1, '>= 0'),
    ('keep_checkpoints', 0, '>= 1'),
    ('keep_checkpoints', -1, '>= 1'),
    # sizes
    ('batch_size', 0, '> 0'),
    ('batch_size', -64, '> 0'),
    ('eval_batch_size', 0, '> 0'),
    ('input.pad', -1, '>= 0'),
    ('input.resize', -32, '>= 0'),
    ('input.crop', -1, '>= 0'),
    ('input.crop', 40, 'larger than the 32x32'),
    ('mesh.model', 0, '>= 1'),
    ('distributed.num_processes', -1, '>= 0'),
    ('distributed.process_id', -2, '>= -1'),
    # seeds: key(2**32) would silently equal key(0)
    ('seed', -1, '[0, 2**32)'),
    ('seed', 2 ** 32, '[0, 2**32)'),
    ('seed', 2 ** 63, '[0, 2**32)'),
    # rates and decays
    ('optim.learning_rate', 0.0, '> 0'),
    ('optim.learning_rate', -0.1, '> 0'),
    ('optim.momentum', -0.1, '[0.0, 1.0)'),
    ('optim.momentum', 1.0, '[0.0, 1.0)'),
    ('optim.momentum', 1.5, '[0.0, 1.0)'),
    ('ema_decay', 1.0, '[0.0, 1.0)'),
    ('ema_decay', -0.5, '[0.0, 1.0)'),
    ('model.dropout_rate', 1.0, '[0.0, 1.0)'),
    ('model.dropout_rate', -0.1, '[0.0, 1.0)'),
    ('input.brightness', -1.0, '>= 0'),
    ('distill.temperature', 0.0, '> 0'),
    ('distill.hard_weight', 1.5, '[0.0, 1.0]'),
]


@pytest.mark.parametrize('field,value,valid', OUT_OF_RANGE)
def test_out_of_range_value_is_rejected(field, value, valid):
  _rejects({field: value}, field, value, valid)


@pytest.mark.parametrize('field,value,schedule', [
    ('optim.decay_rate', 0.0, 'staircase_exp'),
    ('optim.decay_rate', -0.1, 'staircase_exp'),
    ('optim.decay_rate', 1.5, 'staircase_exp'),
    ('optim.decay_epochs', 0.0, 'staircase_exp'),
    ('optim.decay_epochs', -1.0, 'staircase_exp'),
    ('optim.discexp_a', 0.0, 'discexp'),
    ('optim.discexp_b', 0.0, 'discexp'),
    ('optim.discexp_b', -1e6, 'discexp'),
    ('optim.warmup_epochs', -1.0, 'cosine'),
    ('optim.warmup_epochs', 100.0, 'cosine'),  # >= num_epochs: never decays
])
def test_schedule_parameter_out_of_range(field, value, schedule):
  _rejects({'optim.schedule': schedule, field: value}, field, value)


def test_schedule_parameters_of_other_schedules_are_not_read():
  c = _quickstart()
  c.optim.schedule = 'constant'
  c.optim.decay_rate, c.optim.discexp_b, c.optim.warmup_epochs = 0., 0., -1.
  experiment.validate(c)


@pytest.mark.parametrize('field', [
    'num_epochs', 'optim.learning_rate', 'optim.momentum', 'ema_decay',
    'l2.rate', 'input.brightness', 'optim.decay_rate', 'optim.discexp_a',
    'optim.warmup_epochs', 'distill.temperature', 'distill.hard_weight',
    'model.dropout_rate', 'compress.prune.sparsity',
    'compress.deep_compression.quantize_lr_scale'])
@pytest.mark.parametrize('value', [NAN, INF, -INF])
def test_non_finite_float_is_rejected(field, value):
  _rejects({field: value}, field, value, 'must be finite')


@pytest.mark.parametrize('field,value', [
    ('input.contrast', (NAN, 1.0)), ('input.mean', (INF,)),
    ('input.std', (NAN,))])
def test_non_finite_tuple_entry_is_rejected(field, value):
  _rejects({field: value}, field + '[0]', value[0], 'must be finite')


@pytest.mark.parametrize('field', ['batch_size', 'seed', 'keep_checkpoints',
                                   'num_train_steps', 'input.crop',
                                   'mesh.model', 'log_every_steps'])
def test_bool_in_an_int_field_is_rejected(field):
  # ml_collections accepts True/False for int fields (bool subclasses int).
  _rejects({field: True}, field, True, 'must be an integer')


@pytest.mark.parametrize('field,value', [
    ('optim.optimizer', 'rmsprop'), ('optim.schedule', 'linear'),
    ('input.normalize', 'minmax'), ('l2.mode', 'l1'),
    ('precision', 'float16'), ('xla_cpu_conv', 'mkl'),
    ('init_from_weights', 'emma'), ('distill.teacher_weights', 'best'),
    ('distill.mode', 'online'), ('distill.loss', 'mse'), ('parallel', 'ddp')])
def test_unknown_choice_is_rejected(field, value):
  _rejects({field: value}, field, repr(value))


@pytest.mark.parametrize('changes,field,value', [
    ({'num_epochs': 0.0, 'num_train_steps': 0}, 'num_train_steps', 0),
    ({'num_epochs': 0.0, 'num_train_steps': -1}, 'num_epochs', 0.0),
    ({'input.contrast': (1.5, 0.5)}, 'input.contrast', (1.5, 0.5)),
    ({'input.contrast': (-0.2, 1.0)}, 'input.contrast', (-0.2, 1.0)),
    ({'input.contrast': (1.0,)}, 'input.contrast', (1.0,)),
    ({'input.normalize': 'mean_std', 'input.std': (0.0,)}, 'input.std',
     (0.0,)),
    ({'input.mean': (1.0, 2.0)}, 'input.mean', (1.0, 2.0)),  # 1 channel
    ({'distributed.num_processes': 2, 'distributed.process_id': 2},
     'distributed.process_id', 2),
])
def test_inconsistent_values_are_rejected(changes, field, value):
  _rejects(changes, field, value)


@pytest.mark.parametrize('changes,field', [
    ({'input.random_crop': True}, 'input.random_crop'),  # crop 0: no-op
    ({'optim.nesterov': True, 'optim.momentum': 0.0}, 'optim.nesterov'),
    ({'optim.nesterov': True, 'optim.optimizer': 'adam',
      'optim.learning_rate': 1e-3}, 'optim.nesterov'),
    ({'l2.rate': 5e-4}, 'l2.rate'),  # l2.mode 'none' would ignore it
])
def test_silently_ignored_settings_are_rejected(changes, field):
  _rejects(changes, field, True if field == 'optim.nesterov' else
           changes.get(field, ''))


@pytest.mark.parametrize('changes', [
    {'seed': 2 ** 32 - 1}, {'seed': 0}, {'keep_checkpoints': 1},
    {'num_train_steps': 0}, {'num_epochs': 0.0, 'num_train_steps': 5},
    {'optim.momentum': 0.0}, {'ema_decay': 0.0}, {'ema_decay': 0.999},
    {'log_every_steps': 0, 'eval_every_steps': 0, 'checkpoint_every_steps': 0},
    {'input.crop': 32}, {'input.crop': 0, 'input.pad': 0},
    {'input.pad': 2, 'input.crop': 32, 'input.random_crop': True},
    {'model.dropout_rate': 0.0}, {'model.dropout_rate': 0.5},
    {'input.contrast': (0.0, 2.0)}, {'distill.hard_weight': 1.0},
    {'optim.schedule': 'staircase_exp', 'optim.decay_rate': 1.0},
    {'optim.schedule': 'cosine', 'optim.warmup_epochs': 0.0},
    {'optim.schedule': 'cosine', 'optim.warmup_epochs': 100.0,
     'num_train_steps': 50},  # warm-up vs steps needs the data's size
    {'optim.optimizer': 'adam', 'optim.momentum': 0.0},
    {'l2.mode': 'coupled', 'l2.rate': 0.0},
    {'distributed.num_processes': 4, 'distributed.process_id': 3},
])
def test_edge_values_in_range_are_accepted(changes):
  c = _quickstart()
  for k, v in changes.items():
    _set(c, k, v)
  experiment.validate(c)


def _variants(path):
  """None plus every :arg that the config's own error message lists as
  valid; a '_suffix' token there (e.g. '(+ _lr005)') applies to each arg."""
  name = os.path.splitext(os.path.basename(path))[0]
  with pytest.raises(ValueError, match='valid:') as e:
    load_sibling(path, name, 'no-such-variant')
  tokens = re.findall(r'\w+', str(e.value).split('valid:', 1)[1])
  base = [t for t in tokens if not t.startswith('_')]
  return [None] + base + [b + t for t in tokens if t.startswith('_')
                          for b in base]


CONFIG_FILES = sorted(
    p for p in glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'),
                         recursive=True)
    if not os.path.basename(p).startswith('_'))


@pytest.mark.parametrize('path', CONFIG_FILES,
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_every_shipped_config_variant_validates(path):
  name = os.path.splitext(os.path.basename(path))[0]
  for arg in _variants(path):
    experiment.validate(load_sibling(path, name, arg))


def _cli(workdir, *overrides, mode='train'):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  start = time.monotonic()
  p = subprocess.run(
      [sys.executable, '-m', 'jaxcnn.main', '--config',
       'configs/quickstart.py', '--workdir', str(workdir), f'--mode={mode}',
       *overrides], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=120)
  return p, time.monotonic() - start


@pytest.mark.parametrize('override,words', [
    ('--config.seed=-1', ('seed', '-1', '[0, 2**32)')),
    ('--config.keep_checkpoints=0', ('keep_checkpoints', '0', '>= 1')),
    ('--config.optim.momentum=1.0', ('optim.momentum', '1.0', '[0.0, 1.0)')),
    ('--config.num_epochs=nan', ('num_epochs', 'nan', 'finite')),
    ('--config.input.crop=-4', ('input.crop', '-4', '>= 0')),
])
def test_cli_rejects_out_of_range_in_seconds(tmp_path, override, words):
  workdir = tmp_path / 'run'
  p, seconds = _cli(workdir, override)
  assert p.returncode == 2, p.stderr
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), p.stderr
  assert all(w in lines[0] for w in words), lines[0]
  assert not workdir.exists()  # rejected before anything is written
  # Validation runs before data or compile: JAX start-up is the cost. The
  # bound leaves room for a loaded machine; unloaded it takes ~2 s.
  assert seconds < 30, seconds


def test_cli_eval_mode_validates_too(tmp_path):
  p, _ = _cli(tmp_path / 'run', '--config.ema_decay=1.0', mode='eval_once')
  assert p.returncode == 2, p.stderr
  assert 'ema_decay must be in [0.0, 1.0)' in p.stderr
  assert not (tmp_path / 'run').exists()
