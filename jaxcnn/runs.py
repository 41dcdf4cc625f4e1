"""The entry points' services: build the plugins a config asks for, train
it, and evaluate a run directory (--mode=eval / eval_once).

main.py, the compress CLI and notebooks call `train`; it dispatches Deep
Compression (a driver of ordinary runs, compress/pipeline.py) and hands
every other config to the core with its plugins. The core never imports
this module.
"""
from __future__ import annotations

import logging
import os

import jax

from jaxcnn import evaluate as evaluate_lib
from jaxcnn import experiment, parallel, plots, reopen
from jaxcnn import train as train_lib
from jaxcnn.compress import pipeline as deep_compression
from jaxcnn.compress import distill
from jaxcnn.compress import plugins as compress_plugins
from jaxcnn.data import augment, streaming


def plugins_for(config) -> list:
  """Compression/distillation plugins, then the end-of-run plots (only for
  runs whose finish writes no compression report)."""
  out = compress_plugins.from_config(config)
  if config.end_plots and not any(p.name == 'compress' for p in out):
    out.append(plots.EndPlots())
  return out


def validate(config) -> None:
  """Every check of a config before any data or compile: the core's
  (experiment.validate) and the plugins' own sections."""
  experiment.validate(config)
  compress_plugins.validate(config)
  distill.check_settings(config)


def train(config, workdir: str) -> dict:
  """python -m jaxcnn.main --mode=train: returns the final evaluation."""
  parallel.check_config(config)
  parallel.maybe_initialize_distributed(config.distributed)
  validate(config)
  if reopen.is_driver_output(config):  # a chain of runs
    return deep_compression.run(config, workdir)
  return train_lib.train_and_evaluate(config, workdir, plugins_for(config))


def evaluate(workdir: str, config=None, once: bool = True,
             poll_seconds: float = 10.0, timeout_seconds: float = 0.0,
             grace_seconds: float = 120.0):
  """--mode=eval_once / eval on `workdir`, with the config it was trained
  with (a `config` given must agree with it). eval follows a live run
  (evaluate.watch); eval_once evaluates the newest intact checkpoint."""
  if config is not None:  # a bad --config is reported as such, first
    validate(config)
  config = reopen.config_of(workdir, config)
  if reopen.is_driver_output(config):
    return deep_compression.evaluate_artifact(config, workdir)
  experiment.validate(config)
  mesh = parallel.make_mesh()
  parallel.check_global_batch(config.eval_batch_size, mesh, 'eval_batch_size')
  b, plugins = reopen.build(config, mesh)
  eval_fn = evaluate_lib.make_eval_fn(
      b.model, augment.spec_from_config(config.input), mesh, None, plugins)
  if streaming.is_streaming(config):
    num_train = len(streaming.open_sources(config)[0])
    stream = streaming.open_eval(config, config.eval_batch_size,
                                 jax.process_index(), jax.process_count())
    evaluate_step = lambda state: evaluate_lib.evaluate_state(
        eval_fn, state, None, None, config.eval_batch_size, mesh, stream)
  else:
    splits = experiment.load_splits(config)
    logging.info('data: %s', splits.source)
    num_train = len(splits.x_train)
    evaluate_step = lambda state: evaluate_lib.evaluate_state(
        eval_fn, state, splits.x_test, splits.y_test, config.eval_batch_size,
        mesh)
  total = experiment.plan(config, num_train).total_steps
  directory = os.path.join(workdir, 'checkpoints')
  if once:
    return evaluate_lib.evaluate_latest(directory, b.state, evaluate_step)[0]
  return evaluate_lib.watch(workdir, directory, b.state, evaluate_step, total,
                            poll_seconds, timeout_seconds, grace_seconds)
