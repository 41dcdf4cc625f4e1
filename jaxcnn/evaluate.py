"""Evaluation over the whole test set, and the eval-while-train watcher.

Every test example counts exactly once: the last batch is padded and masked.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any, Callable

import jax
import numpy as np

from jaxcnn import checkpoint, experiment, parallel, steps
from jaxcnn import workdir as run_dir
from jaxcnn.data import augment, pipeline
from jaxcnn.errors import CheckpointError


def make_eval_fn(model, spec: augment.InputSpec, mesh,
                 state_sharding: Any = None) -> Callable:
  """`state_sharding` (a TrainState of shardings) keeps model-sharded params
  where they are; None means replicated. EMA params share the params'."""
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  params, stats = ((repl, repl) if state_sharding is None else
                   (state_sharding.params, state_sharding.batch_stats))
  return jax.jit(functools.partial(steps.eval_step, model=model,
                                   input_spec=spec),
                 in_shardings=(params, stats, data), out_shardings=repl)


def evaluate(eval_fn: Callable, params: Any, batch_stats: Any,
             images: np.ndarray, labels: np.ndarray, batch_size: int,
             mesh) -> dict[str, float]:
  sharding = parallel.data_sharding(mesh)
  totals = None
  throttle = parallel.Throttle.for_mesh(mesh)
  batches = pipeline.eval_batches(images, labels, batch_size,
                                  jax.process_index(), jax.process_count())
  for batch in pipeline.prefetch(
      batches, lambda b: pipeline.put_global(b, sharding)):
    out = throttle(eval_fn(params, batch_stats, batch))
    totals = out if totals is None else jax.tree.map(lambda a, b: a + b,
                                                     totals, out)
  t = jax.device_get(totals)
  n = float(t['count'])
  return {'precision@1': float(t['correct']) / n, 'top5': float(t['top5']) / n,
          'loss': float(t['loss']) / n, 'count': n}


def evaluate_state(eval_fn, state, images, labels, batch_size, mesh
                   ) -> dict[str, dict[str, float]]:
  """Raw weights always; the EMA weights too when the run keeps them."""
  out = {'params': evaluate(eval_fn, state.params, state.batch_stats, images,
                            labels, batch_size, mesh)}
  if state.ema_params:
    out['ema'] = evaluate(eval_fn, state.ema_params, state.batch_stats,
                          images, labels, batch_size, mesh)
  return out


def print_precision(results: dict[str, dict[str, float]], step: int) -> None:
  for name, r in results.items():
    tag = '' if name == 'params' else f' ({name} weights)'
    print(f'step {step}: precision @ 1 = {r["precision@1"]:.3f}{tag}',
          flush=True)


def run(config, workdir: str, once: bool, poll_seconds: float = 10.0,
        timeout_seconds: float = 0.0,
        grace_seconds: float = 120.0) -> dict[str, dict[str, float]] | None:
  """--mode=eval / eval_once: evaluates checkpoints of a workdir as they land.

  eval_once: the newest intact checkpoint (damaged ones are skipped).
  eval: follows a live run, evaluating the newest step not yet seen; a
  damaged step is reported once and never retried. It stops after the
  run's final step, after `timeout_seconds` (> 0) without a new
  checkpoint, or when no trainer holds the workdir and every checkpoint
  there is evaluated (after `grace_seconds`, for a trainer still starting).
  """
  experiment.validate(config)
  mesh = parallel.make_mesh()
  parallel.check_global_batch(config.eval_batch_size, mesh, 'eval_batch_size')
  model = experiment.build_model(config)
  spec = augment.spec_from_config(config.input)
  splits = experiment.load_splits(config)
  logging.info('data: %s', splits.source)
  total = experiment.plan(config, len(splits.x_train)).total_steps
  template = experiment.state_template(config, mesh)
  eval_fn = make_eval_fn(model, spec, mesh)
  if config.compress.method:
    # A compression run's state holds the method's state (masks, factors):
    # restore into the same structure and evaluate the way training did.
    from jaxcnn.compress import session as compress_session
    _, schedule = experiment.make_optimizer(config, model,
                                            experiment.Plan(1, 1))
    crun = compress_session.start(config, model, schedule, template, mesh,
                                  restore_only=True)
    template, eval_fn = crun.state, crun.wrap_eval(eval_fn)
  directory = os.path.join(workdir, 'checkpoints')
  evaluate_step = lambda state: evaluate_state(
      eval_fn, state, splits.x_test, splits.y_test, config.eval_batch_size,
      mesh)
  if once:
    state, step, _ = checkpoint.load_latest(directory, template)
    if step is None:
      raise CheckpointError(f'no checkpoint in {directory} to evaluate')
    results = evaluate_step(state)
    print_precision(results, step)
    return results
  return _watch(workdir, directory, template, evaluate_step, total,
                poll_seconds, timeout_seconds, grace_seconds)


def _newest_intact(ckpt, steps, template):
  """(state, step) of the newest of `steps` that restores; damaged ones are
  reported and (by the caller) never retried. Older intact ones are
  superseded by a newer one."""
  for step in reversed(steps):
    try:
      return ckpt.restore(step, template), step
    except CheckpointError as e:
      if 'does not match' in str(e):
        raise
      print(f'warning: {e}; skipped', flush=True)
  return None, None


def _watch(workdir, directory, template, evaluate_step, total, poll_seconds,
           timeout_seconds, grace_seconds):
  seen, results = set(), None
  started = last_new = time.time()
  while True:
    new = [s for s in checkpoint.complete_steps(directory) if s not in seen]
    if new:  # a reader, opened only when there is something to read
      seen.update(new)
      last_new = time.time()
      ckpt = checkpoint.Checkpointer(directory, async_save=False)
      try:
        state, step = _newest_intact(ckpt, new, template)
      finally:
        ckpt.close()
      if state is None:
        continue
      results = evaluate_step(state)
      print_precision(results, step)
      if step >= total:
        return results
      continue
    now = time.time()
    if timeout_seconds and now - last_new > timeout_seconds:
      return results
    if (not run_dir.is_locked(workdir) and
        (seen or now - started > grace_seconds)):
      print(f'eval: no trainer holds {workdir} and every checkpoint there '
            'is evaluated; stopping', flush=True)
      return results
    time.sleep(poll_seconds)
