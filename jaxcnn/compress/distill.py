"""Knowledge distillation (Hinton et al. 2015): the teacher side.

frozen  config.distill.teacher_workdir names a trained run. Its config.json
        builds the teacher model, its latest checkpoint gives the weights.
        Both are checked here, before any data is loaded or anything is
        compiled. The variables go into the jitted train step as an argument
        (steps.train_step's `teacher`); they are never updated and never
        written to the student's checkpoints.
joint   the model becomes JointModel(student, teacher): both are trained in
        one step, the teacher on the labels, the student on the labels and
        the teacher's (stop-gradient) soft targets. Evaluation, predict and
        the checkpoint see the pair; its __call__ returns the student.

The loss itself is losses.distillation_loss. `write_report` produces the
compression report of a distilled student against its teacher (CLI
`python -m jaxcnn.compress --method distill`).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxcnn import experiment, models, steps
from jaxcnn.errors import CheckpointError, ConfigError
from jaxcnn.losses import path_str

MODES = ('frozen', 'joint')
LOSSES = ('kd', 'logits')
# Fields that decide what image the network sees at eval time: a frozen
# teacher runs on the student's augmented batch, so these must agree.
_INPUT_FIELDS = ('pad', 'resize', 'crop', 'normalize', 'mean', 'std')


@dataclasses.dataclass
class Teacher:
  model: nn.Module
  variables: dict            # {'params', 'batch_stats'} as numpy arrays
  config: Any                # the teacher run's config (from config.json)
  workdir: str
  step: int
  weights: str               # 'params' or 'ema'


class JointModel(nn.Module):
  """Student and teacher as one module, for distill.mode='joint'."""
  student: nn.Module
  teacher: nn.Module

  def __call__(self, x, train: bool = False):
    logits = self.student(x, train=train)
    if self.is_initializing():  # create the teacher's variables too
      self.teacher(x, train=train)
    return logits

  def both(self, x, train: bool = False):
    return self.student(x, train=train), self.teacher(x, train=train)


def enabled(config) -> bool:
  d = config.distill
  return bool(d.teacher_workdir) or d.mode == 'joint'


def step_options(config) -> steps.DistillOptions | None:
  if not enabled(config):
    return None
  d = config.distill
  return steps.DistillOptions(float(d.temperature), float(d.hard_weight),
                              d.loss, d.mode == 'joint')


def _check_settings(config) -> None:
  d = config.distill

  def bad(msg):
    raise ConfigError(f'invalid config: distill.{msg}')
  if d.mode not in MODES:
    bad(f'mode {d.mode!r} not in {MODES}')
  if d.loss not in LOSSES:
    bad(f'loss {d.loss!r} not in {LOSSES}')
  if d.temperature <= 0:
    bad(f'temperature must be > 0, got {d.temperature}')
  if not 0.0 <= d.hard_weight <= 1.0:
    bad(f'hard_weight must be in [0, 1], got {d.hard_weight}')
  if config.parallel == 'pmap' and enabled(config):
    bad("with parallel='pmap' is not supported; use parallel='jit'")
  if d.mode == 'joint':
    if d.teacher_workdir:
      bad('teacher_workdir is for mode=frozen; joint trains '
          'distill.teacher_model from scratch next to the student')
    if d.teacher_model not in models.list_models():
      bad(f'teacher_model {d.teacher_model!r} (mode=joint) is not a model; '
          f'valid names: {", ".join(models.list_models())}')


def wrap_model(config, student: nn.Module) -> nn.Module:
  """The student, or JointModel(student, teacher) for mode='joint'."""
  if not enabled(config) or config.distill.mode != 'joint':
    return student
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.model = {'name': config.distill.teacher_model}
  return JointModel(student, experiment.build_model(c))


def _shapes(tree) -> dict[str, tuple]:
  return {path_str(p): tuple(np.shape(v)) for p, v in
          jax.tree_util.tree_flatten_with_path(tree)[0]}


def _first_difference(want: dict, got: dict) -> str:
  for k in sorted(set(want) | set(got)):
    if want.get(k) != got.get(k):
      return (f'{k}: the model needs {want.get(k, "nothing")}, the checkpoint '
              f'has {got.get(k, "nothing")}')
  return ''


def check_input_compatible(student_cfg, teacher_cfg, workdir: str) -> None:
  """The teacher sees the student's batches: same data, same eval view."""
  problems = []
  if student_cfg.dataset.name != teacher_cfg.dataset.name:
    problems.append(f'dataset {teacher_cfg.dataset.name!r} (student: '
                    f'{student_cfg.dataset.name!r})')
  for f in _INPUT_FIELDS:
    t, s = teacher_cfg.input[f], student_cfg.input[f]
    if (tuple(t) if isinstance(t, (list, tuple)) else t) != \
        (tuple(s) if isinstance(s, (list, tuple)) else s):
      problems.append(f'input.{f}={t!r} (student: {s!r})')
  if problems:
    raise ConfigError(
        f'invalid config: distill.teacher_workdir={workdir} was trained on '
        f'different inputs: {"; ".join(problems)}. The teacher runs on the '
        'student\'s batches, so set the student\'s dataset and input.* to '
        'match the teacher run\'s config.json.')


def load_teacher(config) -> Teacher | None:
  """Validates the distill settings and, for mode='frozen', loads and checks
  the teacher. Raises ConfigError / CheckpointError before any compile."""
  _check_settings(config)
  d = config.distill
  if d.mode != 'frozen' or not d.teacher_workdir:
    return None
  workdir = d.teacher_workdir
  if not os.path.isfile(os.path.join(workdir, 'config.json')):
    raise ConfigError(
        f'invalid config: distill.teacher_workdir={workdir} has no '
        'config.json, so the teacher model is unknown; point it at a '
        'finished jaxcnn training workdir')
  from jaxcnn.compress.__main__ import trained_config
  from jaxcnn.compress.session import load_dense
  tcfg = trained_config(workdir)
  check_input_compatible(config, tcfg, workdir)
  try:
    experiment.validate(tcfg)
  except ConfigError as e:
    raise ConfigError(f'distill.teacher_workdir={workdir}: its config.json '
                      f'is not usable: {e}') from None
  model = experiment.build_model(tcfg)
  want = jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.key(0),
      jax.ShapeDtypeStruct((1, *experiment.input_shape(tcfg)), 'float32'))
  try:
    dense = load_dense(workdir, d.teacher_weights)
  except CheckpointError as e:
    raise CheckpointError(f'distill.teacher_workdir: {e}') from None
  for coll in ('params', 'batch_stats'):
    diff = _first_difference(_shapes(want.get(coll, {})),
                             _shapes(dense[coll]))
    if diff:
      raise CheckpointError(
          f'distill.teacher_workdir={workdir}: the checkpoint (step '
          f'{dense["step"]}) does not fit model {tcfg.model.name!r} named by '
          f'its config.json ({coll} {diff}). Was the workdir reused for '
          'another model?')
  variables = {'params': dense['params'], 'batch_stats': dense['batch_stats']}
  return Teacher(model, variables, tcfg, workdir, dense['step'],
                 dense['weights'])


def _timed(fns_vars: list, x, rounds: int = 15) -> list[float]:
  """Median ms per image of each (jitted fn, variables), interleaved."""
  import time
  for fn, v in fns_vars:
    jax.block_until_ready(fn(v, x))
  times = [[] for _ in fns_vars]
  for _ in range(rounds):
    for i, (fn, v) in enumerate(fns_vars):
      t = time.perf_counter()
      jax.block_until_ready(fn(v, x))
      times[i].append(time.perf_counter() - t)
  return [1000.0 * float(np.median(t)) / len(x) for t in times]


def write_report(config, workdir: str) -> dict:
  """compression_report.* of a finished distillation run: the teacher is
  the 'dense' net, the student (stored fp32 in model.jxcz, loaded back) the
  compressed one. There is no 'before fine-tuning' point: the student
  trains from scratch (NaN in the report)."""
  from jaxcnn.compress import apply, report, session, storage
  from jaxcnn.data import augment
  import json
  teacher = load_teacher(config)
  if teacher is None:
    raise ConfigError('write_report: config.distill names no frozen teacher')
  final = json.load(open(os.path.join(workdir, 'final_metrics.json')))
  use_ema = 'ema' in final and (final['ema']['precision@1'] >=
                                final['params']['precision@1'])
  student = session.load_dense(workdir, 'ema' if use_ema else 'params')
  s_vars = {'params': student['params'], 'batch_stats': student['batch_stats']}
  s_model = experiment.build_model(config)
  shape = experiment.input_shape(config)
  meta = {'model': config.model.name,
          'model_kwargs': experiment.model_kwargs(config),
          'dataset': config.dataset.name, 'input_shape': list(shape),
          'method': 'distill'}
  t_meta = {**meta, 'model': teacher.config.model.name,
            'model_kwargs': experiment.model_kwargs(teacher.config)}
  t_bytes = storage.save(os.path.join(workdir, 'dense.jxcz'),
                         teacher.variables, t_meta)
  art = os.path.join(workdir, 'model.jxcz')
  s_bytes = storage.save(art, s_vars, meta)
  loaded, _ = storage.load(art)
  splits = experiment.load_splits(config)
  spec = augment.spec_from_config(config.input)
  s_fn = session._logits_fn(s_model, spec)
  t_fn = session._logits_fn(teacher.model, spec)
  x, y = splits.x_test, splits.y_test
  identical = bool(np.array_equal(np.asarray(s_fn(s_vars, x[:500])),
                                  np.asarray(s_fn(loaded, x[:500]))))
  acc = {'dense': session.accuracy(t_fn, teacher.variables, x, y),
         'compressed_before_finetune': float('nan'),
         'compressed_after_finetune': session.accuracy(s_fn, loaded, x, y)}
  t_ms, s_ms = _timed([(t_fn, teacher.variables), (s_fn, loaded)], x[:200])
  d = config.distill
  rep = report.build(
      meta, teacher.variables, loaded, t_bytes, s_bytes,
      apply.count_macs(teacher.model, teacher.variables, shape),
      apply.count_macs(s_model, loaded, shape), acc,
      {'dense_ms_per_image': t_ms, 'compressed_ms_per_image': s_ms,
       'note': 'dense = the teacher, compressed = the student',
       'device': jax.default_backend()},
      extra={'teacher': teacher.config.model.name,
             'teacher_workdir': teacher.workdir,
             'teacher_step': teacher.step, 'teacher_weights': teacher.weights,
             'temperature': d.temperature, 'hard_weight': d.hard_weight,
             'loss': d.loss, 'weights_used': 'ema' if use_ema else 'params',
             'fine_tune_steps': int(final['step']), 'artifact': 'model.jxcz',
             'roundtrip_identical_logits': identical, 'train_eval': final})
  report.write(workdir, rep)
  return rep
