"""Reopens a run directory exactly as training left it, for every reader:
--mode=eval / eval_once, predict, plots, export and the compress CLI.

The config comes from WORKDIR/config.json (workdir.read_config); a config
given as well must agree with it on everything that shapes the run. The
model and the state template are rebuilt with the same plugins training
used (jaxcnn.compress.plugins.from_config, restore-only: no teacher or
init_from run is read), so a compression run restores with its masks and
factors and a joint distillation run with its teacher half. The weights are
chosen by setting ('auto': EMA when kept), never by test accuracy.

Why a module apart from workdir.py: the trainer (core) uses workdir.py's
lock and config file, and rebuilding needs the plugins, which sit above the
core; one module holding both would be an import cycle.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from jaxcnn import checkpoint, experiment, parallel
from jaxcnn import plugins as plugins_lib
from jaxcnn import workdir as run_dir
from jaxcnn.compress import plugins as compress_plugins
from jaxcnn.errors import CheckpointError, ConfigError

ARTIFACT = 'model.jxcz'  # a compression run's (or Deep Compression's) output


@dataclasses.dataclass
class Reopened:
  config: Any
  workdir: str
  mesh: Any
  model: Any          # the model as trained (plugin-wrapped), eval mode
  plugins: tuple
  state: Any          # the restored TrainState
  step: int
  weights: str        # 'ema' or 'params', as chosen
  params: Any         # what `model` evaluates (plugins' eval_params applied)
  batch_stats: Any


def config_of(workdir: str, config=None):
  """The run's config. A `config` given too must agree on every field that
  changes the run (workdir._NEUTRAL ones such as eval_batch_size or data_dir
  may differ, and its values are then used)."""
  saved = run_dir.read_config_dict(workdir)
  if saved is None:
    raise ConfigError(f'--workdir {workdir} has no {run_dir.CONFIG_FILE}: not '
                      'a jaxcnn training workdir')
  if config is None:
    return run_dir.read_config(workdir)
  blocked = [c for c in run_dir.config_changes(saved, config)
             if not run_dir.is_neutral(c[0])]
  if blocked:
    listing = '; '.join(f'{k}: {a!r} (workdir) vs {b!r}'
                        for k, a, b in blocked[:6])
    raise ConfigError(
        f'--config disagrees with {os.path.join(workdir, "config.json")} '
        f'({listing}); drop --config: the workdir names its own config')
  return config


def is_driver_output(config) -> bool:
  """A Deep Compression run: a chain of stage runs and a final artifact,
  no checkpoints of its own."""
  return config.compress.method == 'deep_compression'


def build(config, mesh=None) -> tuple[plugins_lib.Build, list]:
  """(model and state template of `config`, its plugins), restore-only."""
  mesh = mesh or parallel.make_mesh()
  plugins = compress_plugins.from_config(config, restore_only=True)
  return experiment.build(config, mesh, plugins, restore_only=True), plugins


def reopen(workdir: str, config=None, weights: str | None = None,
           mesh=None) -> Reopened:
  """The newest intact checkpoint of `workdir`, restored into the template
  training used. `weights` None: the config's `weights` setting."""
  config = config_of(workdir, config)
  if is_driver_output(config):
    raise CheckpointError(
        f'{workdir} is a Deep Compression run: its result is '
        f'{os.path.join(workdir, ARTIFACT)} (and the stage runs '
        f'{", ".join(os.path.join(workdir, s) for s in ("1_prune", "2_kmeans"))}'
        '), not a checkpoint')
  experiment.validate(config)
  mesh = mesh or parallel.make_mesh()
  b, plugins = build(config, mesh)
  directory = os.path.join(workdir, 'checkpoints')
  state, step, _ = checkpoint.load_latest(directory, b.state)
  if step is None:
    raise CheckpointError(f'no checkpoint in {directory}')
  use = run_dir.choose_weights(weights or config.weights,
                               bool(state.ema_params), workdir)
  params = state.ema_params if use == 'ema' else state.params
  return Reopened(config, workdir, mesh, b.model, tuple(plugins), state, step,
                  use, plugins_lib.eval_params(plugins, params),
                  state.batch_stats)
