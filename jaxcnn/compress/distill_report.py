"""compression_report.* of a finished distillation run: the frozen
teacher is the 'dense' net, the student the compressed one."""
from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from jaxcnn import experiment
from jaxcnn import workdir as run_dir
from jaxcnn.compress import apply, distill, report, session, storage
from jaxcnn.data import augment
from jaxcnn.errors import ConfigError


def _timed(fns_vars: list, x, rounds: int = 15) -> list[float]:
  """Median ms per image of each (jitted fn, variables), interleaved."""
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
  teacher = distill.load_teacher(config)
  if teacher is None:
    raise ConfigError('write_report: config.distill names no frozen teacher')
  final = json.load(open(os.path.join(workdir, 'final_metrics.json')))
  # The configured weights (config.weights), never the test-set winner.
  student = run_dir.load_weights(workdir, config.weights)
  use_ema = student['weights'] == 'ema'
  s_vars = {'params': student['params'], 'batch_stats': student['batch_stats']}
  s_model = experiment.build_model(config)
  shape = experiment.input_shape(config)
  meta = session.artifact_meta(config, 'distill')
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
