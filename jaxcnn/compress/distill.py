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

The loss itself is losses.distillation_loss; DistillPlugin brings both
modes to the train step (jaxcnn/plugins.py). distill_report.py writes the
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

from jaxcnn import experiment, losses, models, steps
from jaxcnn import plugins as plugins_lib
from jaxcnn import workdir as run_dir
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


class DistillPlugin(plugins_lib.Plugin):
  """Distillation as a training plugin.

  frozen: the teacher's variables are the plugin's extra jit argument; its
          logits on the student's augmented batch (inference mode,
          stop-gradient) replace the cross-entropy by the distillation loss.
  joint:  wrap_model makes the model JointModel(student, teacher); the
          train forward returns both logits, the student learns from the
          labels and the teacher's soft targets, the teacher from the labels.
  Evaluation, predict and export see the student (JointModel.__call__).
  """
  name = 'distill'

  def __init__(self, config, restore_only: bool = False):
    check_settings(config)
    self.config = config
    d = config.distill
    self.joint = d.mode == 'joint'
    self.temperature, self.hard_weight = float(d.temperature), \
        float(d.hard_weight)
    self.loss_kind = d.loss
    # Loaded (and checked) here, before any data or compile; readers of a
    # finished run restore the student alone and need no teacher.
    self.teacher = None if restore_only else load_teacher(config)

  def wrap_model(self, model):
    return wrap_model(self.config, model)

  def extra_args(self):
    return None if self.teacher is None else self.teacher.variables

  def apply_kwargs(self) -> dict:
    return {'method': 'both'} if self.joint else {}

  def split_outputs(self, outputs):
    return outputs if self.joint else (outputs, None)

  def objective(self, loss, inputs):
    if self.joint:
      t_logits = inputs.aux
    else:
      t = self.teacher
      t_logits = jax.lax.stop_gradient(t.model.apply(
          steps.variables(inputs.extra['params'],
                          inputs.extra['batch_stats']),
          inputs.images, train=False))
    kd = losses.distillation_loss(inputs.logits, t_logits, inputs.labels,
                                  self.temperature, self.hard_weight,
                                  self.loss_kind)
    if self.joint:  # the teacher half learns from the labels alone
      kd = kd + losses.cross_entropy(t_logits, inputs.labels)
    # Replaces the cross-entropy term; terms added before (none when the
    # plugin comes first, as from_config orders it) are kept.
    return kd if loss is inputs.cross_entropy else \
        loss - inputs.cross_entropy + kd


def check_settings(config) -> None:
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
  check_settings(config)
  d = config.distill
  if d.mode != 'frozen' or not d.teacher_workdir:
    return None
  workdir = d.teacher_workdir
  if not os.path.isfile(os.path.join(workdir, run_dir.CONFIG_FILE)):
    raise ConfigError(
        f'invalid config: distill.teacher_workdir={workdir} has no '
        'config.json, so the teacher model is unknown; point it at a '
        'finished jaxcnn training workdir')
  tcfg = run_dir.read_config(workdir)
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
    dense = run_dir.load_weights(workdir, d.teacher_weights)
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
