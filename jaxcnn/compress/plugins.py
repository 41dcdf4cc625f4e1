"""Compression and distillation as training plugins (jaxcnn/plugins.py).

`from_config(config)` is the one place that turns a config's `compress`,
`init_from` and `distill` sections into plugins; the entry points (main,
the compress CLI, the Deep Compression driver, and jaxcnn.runs for every
reader of a finished run) call it and hand the plugins to the core.

CompressPlugin adapts a base.Method: its state lives in the optimizer state
(base.CompressState, put there by the optax wrapper the method's wrap_tx
returns), so checkpoints and resume carry masks, factors and codebooks.
"""
from __future__ import annotations

import dataclasses
import re

import jax
import ml_collections

from jaxcnn import experiment
from jaxcnn import plugins as plugins_lib
from jaxcnn.compress import base, distill, ranges, session
from jaxcnn.data import streaming
from jaxcnn.errors import ConfigError
from jaxcnn.losses import path_str


class CompressPlugin(plugins_lib.Plugin):
  """A compression method (or a plain fine-tune from config.init_from)."""
  name = 'compress'

  def __init__(self, config):
    self.config = config
    try:
      self.method = base.get_method(config.compress)
    except ValueError as e:
      raise ConfigError(f'invalid config: compress.method: {e}') from None
    self.session = None

  def setup(self, build: plugins_lib.Build) -> plugins_lib.Build:
    self.session = session.start(build.config, build.model, build.schedule,
                                 build.state, build.mesh, build.restore_only)
    if self.session is None:
      return build
    self.method = self.session.method  # bound, converted, calibrated
    return dataclasses.replace(build, model=self.session.model,
                               tx=self.session.tx, state=self.session.state)

  def state_of(self, opt_state):
    if isinstance(opt_state, base.CompressState):
      return opt_state.method
    return None

  def forward_params(self, params, state):
    return params if self.method is None else \
        self.method.pre_forward(params, state)

  def objective(self, loss, inputs):
    if self.method is None:
      return loss
    return loss + self.method.loss(inputs.params, inputs.state)

  def post_update(self, params, state):
    return params if self.method is None else \
        self.method.post_update(params, state)

  def eval_params(self, params):
    return params if self.method is None else self.method.eval_params(params)

  def finish(self, run: plugins_lib.FinishInputs) -> None:
    if self.session is not None:  # artifact + compression_report.json
      session.finish(self.session, run.state, run.splits, run.workdir,
                     run.results)


def from_config(config, restore_only: bool = False) -> list:
  """The plugins `config` asks for, checked (distill first: its objective
  replaces the cross-entropy, a method's adds a term). `restore_only`:
  for readers of a finished run (no teacher run is read)."""
  validate(config)
  out = []
  if distill.enabled(config):
    out.append(distill.DistillPlugin(config, restore_only))
  if config.compress.method or config.init_from:
    if streaming.is_streaming(config):
      raise ConfigError(
          f'invalid config: compression measures the artifact on in-memory '
          f'test arrays; dataset {config.dataset.name!r} is streamed. '
          'Compress a run on an in-memory dataset (e.g. cifar10)')
    if config.compress.method == 'deep_compression':
      raise ConfigError('invalid config: deep_compression is a chain of runs, '
                        'not one training: run it through python -m '
                        'jaxcnn.main or jaxcnn.runs.train')
    out.append(CompressPlugin(config))
  return out


def validate(config) -> None:
  """The method exists, its values are in range, and every `*include`
  regex of its section names at least one parameter: a typo must not
  silently compress nothing. Raises ConfigError; no data, no compile."""
  ranges.check(config)  # values no method can use (sparsity 1.5, bits 0)
  name = config.compress.method
  if not name:
    return
  if name not in base.list_methods():
    raise ConfigError(f'invalid config: unknown compress.method {name!r}; '
                      f'valid: {", ".join(base.list_methods())}')
  section = config.compress[name] if name in config.compress else None
  if not isinstance(section, ml_collections.ConfigDict):
    return
  params = experiment.params_shape(config, experiment.build_model(config))
  paths = [path_str(p) for p, _ in
           jax.tree_util.tree_flatten_with_path(params)[0]]
  # Methods match parameter paths (prune) or layer paths (filter_prune, svd).
  layers = sorted({p.rpartition('/')[0] for p in paths})
  for key, value in section.items():
    if not (key.endswith('include') and isinstance(value, str) and value):
      continue
    try:
      regex = re.compile(value)
    except re.error as e:
      raise ConfigError(f'invalid config: compress.{name}.{key} is not a '
                        f'valid regex: {e}') from None
    if not any(regex.search(p) for p in paths + layers):
      raise ConfigError(
          f'invalid config: compress.{name}.{key}={value!r} matches no layer '
          f'of {config.model.name!r}; layers are: {", ".join(layers)}')
