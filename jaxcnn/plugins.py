"""The one protocol through which anything that changes *what* is trained
(compression methods, distillation, end-of-run products such as plots)
reaches the training core.

The core (train, steps, evaluate) receives a tuple of plugins and calls
their hooks; it imports no plugin. Order of calls:

  set-up, once, outside jit (experiment.build: training and every reader):
    model = plugin.wrap_model(model)     # before the optimizer and state
                                         # exist (e.g. a joint teacher pair)
    build = plugin.setup(build)          # convert the initial params, wrap
                                         # the optimizer, ...
    extra = plugin.extra_args()          # a jit argument, never checkpointed
  inside the jitted train step (steps.train_step):
    pstate = plugin.state_of(opt_state)  # the plugin's own state, if any
    fwd    = plugin.forward_params(params, pstate)      # e.g. U@V, sign(w)
    kwargs : plugin.apply_kwargs()       # e.g. {'method': 'both'}
    logits, aux = plugin.split_outputs(outputs)
    loss   = plugin.objective(loss, LossInputs)         # sees batch + logits
    params = plugin.post_update(params, pstate')        # e.g. re-apply masks
  evaluation and predict:
    plugin.eval_params(params)           # what the (wrapped) model evaluates
  after training, process 0 only:
    plugin.finish(FinishInputs)          # artifact, report, plots

A plugin that keeps state across steps keeps it inside the optimizer state
(its `setup` wraps `build.tx` in an optax.GradientTransformationExtraArgs
with a typed state), so orbax checkpoints and exact resume cover it with no
extra code, as in jaxpruner.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Build:
  """What set-up hands from plugin to plugin: each returns a replaced copy.

  restore_only: the state only needs the right structure and shapes (it is
  a template that a checkpoint of this run is restored into), so a plugin
  must not read other workdirs (e.g. the dense run named by init_from).
  """
  config: Any
  model: Any
  tx: Any
  schedule: Callable
  state: Any          # the TrainState (template) in its sharding
  mesh: Any
  restore_only: bool = False


@dataclasses.dataclass(frozen=True)
class LossInputs:
  """What a plugin's objective sees inside the differentiated loss."""
  params: PyTree          # the trained params (not the forward view)
  state: PyTree           # this plugin's state (state_of), or None
  images: jax.Array       # the augmented batch the model saw
  labels: jax.Array
  logits: jax.Array       # float32 model outputs
  aux: Any                # what split_outputs set aside (e.g. teacher logits)
  extra: Any              # this plugin's extra_args() value inside jit
  cross_entropy: jax.Array


@dataclasses.dataclass(frozen=True)
class FinishInputs:
  """A finished training run, in memory, for plugins' finish hooks."""
  config: Any
  workdir: str
  model: Any
  state: Any              # host copy of the final TrainState
  splits: Any             # data.sources.Splits
  results: dict           # the final evaluation {'params': ..., 'ema': ...}
  plugins: tuple = ()


class Plugin:
  """Identity hooks; a plugin overrides only what it needs."""
  name = 'plugin'

  def wrap_model(self, model):
    """The model whose params are created, trained and checkpointed."""
    return model

  def setup(self, build: Build) -> Build:
    return build

  def extra_args(self) -> PyTree | None:
    """A pytree passed into the jitted step as an argument (replicated);
    None: nothing. Frozen teacher variables go here, out of checkpoints."""
    return None

  def state_of(self, opt_state: PyTree) -> PyTree | None:
    del opt_state
    return None

  def forward_params(self, params: PyTree, state: PyTree) -> PyTree:
    del state
    return params

  def apply_kwargs(self) -> dict:
    return {}

  def split_outputs(self, outputs: Any) -> tuple[jax.Array, Any]:
    return outputs, None

  def objective(self, loss: jax.Array, inputs: LossInputs) -> jax.Array:
    del inputs
    return loss

  def post_update(self, params: PyTree, state: PyTree) -> PyTree:
    del state
    return params

  def eval_params(self, params: PyTree) -> PyTree:
    """Params the wrapped model evaluates and predicts with, from the
    trained (or EMA) params alone: no plugin state is at hand there."""
    return params

  def finish(self, run: FinishInputs) -> None:
    del run


def wrap_model(plugins: Sequence[Plugin], model):
  for p in plugins:
    model = p.wrap_model(model)
  return model


def run_setup(plugins: Sequence[Plugin], build: Build) -> Build:
  for p in plugins:
    build = p.setup(build)
  return build


def extra_args(plugins: Sequence[Plugin]) -> tuple:
  """One entry per plugin (None where it has none)."""
  return tuple(p.extra_args() for p in plugins)


def states(plugins: Sequence[Plugin], opt_state) -> tuple:
  return tuple(p.state_of(opt_state) for p in plugins)


def forward_params(plugins, pstates, params):
  for p, s in zip(plugins, pstates):
    params = p.forward_params(params, s)
  return params


def apply_kwargs(plugins) -> dict:
  kw = {}
  for p in plugins:
    kw.update(p.apply_kwargs())
  return kw


def split_outputs(plugins, outputs):
  """(logits, aux per plugin)."""
  aux = []
  for p in plugins:
    outputs, a = p.split_outputs(outputs)
    aux.append(a)
  return outputs, tuple(aux)


def post_update(plugins, pstates, params):
  for p, s in zip(plugins, pstates):
    params = p.post_update(params, s)
  return params


def eval_params(plugins, params):
  """The params the (plugin-wrapped) model evaluates."""
  for p in plugins:
    params = p.eval_params(params)
  return params
