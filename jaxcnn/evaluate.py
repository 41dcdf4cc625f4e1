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
from jaxcnn.data import augment, pipeline, sources
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
  batches = pipeline.eval_batches(images, labels, batch_size,
                                  jax.process_index(), jax.process_count())
  for batch in pipeline.prefetch(
      batches, lambda b: pipeline.put_global(b, sharding)):
    out = eval_fn(params, batch_stats, batch)
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
        timeout_seconds: float = 0.0) -> dict[str, dict[str, float]] | None:
  """--mode=eval / eval_once: evaluates checkpoints of a workdir as they land.

  `timeout_seconds` > 0 stops the watcher after that long without a new
  checkpoint; the watcher also stops after the final step of the run.
  """
  experiment.validate(config)
  mesh = parallel.make_mesh()
  parallel.check_global_batch(config.eval_batch_size, mesh, 'eval_batch_size')
  model = experiment.build_model(config)
  spec = augment.spec_from_config(config.input)
  splits = sources.load(config.dataset.name, data_dir=config.data_dir,
                        cache_dir=config.cache_dir,
                        tfds_data_dir=config.tfds_data_dir,
                        allow_download=config.dataset.allow_download)
  logging.info('data: %s', splits.source)
  p = experiment.plan(config, len(splits.x_train))
  template = experiment.state_template(config, mesh)
  eval_fn = make_eval_fn(model, spec, mesh)
  if config.compress.method:
    # A compression run's state holds the method's state (masks, factors):
    # restore into the same structure and evaluate the way training did.
    from jaxcnn.compress import session as compress_session
    _, schedule = experiment.make_optimizer(config, model,
                                            experiment.Plan(1, 1))
    run = compress_session.start(config, model, schedule, template, mesh,
                                 restore_only=True)
    template, eval_fn = run.state, run.wrap_eval(eval_fn)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                 async_save=False)
  last, last_time, results = None, time.time(), None
  while True:
    step = ckpt.latest_step()
    if step is not None and step != last:
      state, step = ckpt.restore_latest(template)
      results = evaluate_state(eval_fn, state, splits.x_test, splits.y_test,
                               config.eval_batch_size, mesh)
      print_precision(results, step)
      last, last_time = step, time.time()
      if once or step >= p.total_steps:
        return results
    elif once:
      raise CheckpointError(f'no checkpoint in {ckpt.directory} to evaluate')
    if timeout_seconds and time.time() - last_time > timeout_seconds:
      return results
    time.sleep(poll_seconds)

