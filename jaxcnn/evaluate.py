"""Evaluation over the whole test set, and the eval-while-train watcher.

Every test example counts exactly once: the last batch is padded and masked.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np

from jaxcnn import checkpoint, parallel, steps
from jaxcnn import plugins as plugins_lib
from jaxcnn import workdir as run_dir
from jaxcnn.data import augment, pipeline
from jaxcnn.errors import CheckpointError, CheckpointGone


def make_eval_fn(model, spec: augment.InputSpec, mesh,
                 state_sharding: Any = None, plugins=()) -> Callable:
  """`state_sharding` (a TrainState of shardings) keeps model-sharded params
  where they are; None means replicated. EMA params share the params'.
  Plugins' eval_params turn the trained params into what the (wrapped)
  model evaluates (e.g. SVD factors -> dense kernels)."""
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  params, stats = ((repl, repl) if state_sharding is None else
                   (state_sharding.params, state_sharding.batch_stats))
  plugins = tuple(plugins)

  def fn(params, batch_stats, batch):
    return steps.eval_step(plugins_lib.eval_params(plugins, params),
                           batch_stats, batch, model=model, input_spec=spec)
  return jax.jit(fn, in_shardings=(params, stats, data), out_shardings=repl)


def evaluate_batches(eval_fn: Callable, params: Any, batch_stats: Any,
                     batches, mesh) -> dict[str, float]:
  """Sums eval_fn over this process's padded, masked host batches (an
  iterable of {'image', 'label', 'mask'}): every example counts once."""
  sharding = parallel.data_sharding(mesh)
  totals = None
  throttle = parallel.Throttle.for_mesh(mesh)
  for batch in pipeline.prefetch(
      iter(batches), lambda b: pipeline.put_global(b, sharding)):
    out = throttle(eval_fn(params, batch_stats, batch))
    totals = out if totals is None else jax.tree.map(lambda a, b: a + b,
                                                     totals, out)
  t = jax.device_get(totals)
  n = float(t['count'])
  return {'precision@1': float(t['correct']) / n, 'top5': float(t['top5']) / n,
          'loss': float(t['loss']) / n, 'count': n}


def evaluate(eval_fn: Callable, params: Any, batch_stats: Any,
             images: np.ndarray, labels: np.ndarray, batch_size: int,
             mesh) -> dict[str, float]:
  return evaluate_batches(
      eval_fn, params, batch_stats,
      pipeline.eval_batches(images, labels, batch_size, jax.process_index(),
                            jax.process_count()), mesh)


def evaluate_state(eval_fn, state, images, labels, batch_size, mesh,
                   stream=None) -> dict[str, dict[str, float]]:
  """Raw weights always; the EMA weights too when the run keeps them.
  `stream` (a re-iterable of padded host batches, data/streaming.py)
  replaces images/labels."""
  def one(params):
    if stream is not None:
      return evaluate_batches(eval_fn, params, state.batch_stats, stream,
                              mesh)
    return evaluate(eval_fn, params, state.batch_stats, images, labels,
                    batch_size, mesh)
  out = {'params': one(state.params)}
  if state.ema_params:
    out['ema'] = one(state.ema_params)
  return out


def print_precision(results: dict[str, dict[str, float]], step: int) -> None:
  for name, r in results.items():
    tag = '' if name == 'params' else f' ({name} weights)'
    print(f'step {step}: precision @ 1 = {r["precision@1"]:.3f}{tag}',
          flush=True)


def evaluate_latest(directory: str, template, evaluate_step
                    ) -> tuple[dict, int]:
  """--mode=eval_once: the newest intact checkpoint (damaged ones are
  skipped); CheckpointError if there is none."""
  state, step, _ = checkpoint.load_latest(directory, template)
  if step is None:
    raise CheckpointError(f'no checkpoint in {directory} to evaluate')
  results = evaluate_step(state)
  print_precision(results, step)
  return results, step


def _newest_intact(ckpt, steps, template):
  """(state, step) of the newest of `steps` that restores; damaged ones are
  reported and (by the caller) never retried. Older intact ones are
  superseded by a newer one, and so is every one of `steps` when one was
  deleted by the trainer's keep policy: (None, None), list again."""
  for step in reversed(steps):
    try:
      return ckpt.restore(step, template), step
    except CheckpointGone as e:  # behind the trainer: a newer step exists
      print(f'eval: {e}; skipped', flush=True)
      return None, None  # the caller re-lists (older ones are superseded)
    except CheckpointError as e:
      if 'does not match' in str(e):
        raise
      print(f'warning: {e}; skipped', flush=True)
  return None, None


def watch(workdir, directory, template, evaluate_step, total, poll_seconds,
          timeout_seconds, grace_seconds):
  """--mode=eval: follows a live run, evaluating the newest step not yet
  seen; a damaged step is reported once and never retried. It stops after
  the run's final step (`total`), after `timeout_seconds` (> 0) without a
  new checkpoint, or when no trainer holds the workdir and every checkpoint
  there is evaluated (after `grace_seconds`, for a trainer still
  starting)."""
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
