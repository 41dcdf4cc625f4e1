"""The compression framework: a method is a handful of hooks on training.

A method reaches the train step through its plugin (compress/plugins.py,
CompressPlugin; the protocol is jaxcnn/plugins.py), which calls, in order:
  params_fwd = method.pre_forward(params, mstate)     # e.g. U@V, sign(w)
  loss      += method.loss(params, mstate)            # e.g. L1, group lasso
  tx = method.wrap_tx(tx)   (once, when the optimizer is built)
  params     = method.post_update(params, mstate')    # e.g. re-apply masks
`mstate` is the method's own state (masks, codebooks ...). It lives inside
the optimizer state (`CompressState.method`, kept there by the
optax.GradientTransformationExtraArgs that `wrap_tx` returns), so orbax
checkpoints and resume cover it with no extra code and TrainState keeps its
fields, so older checkpoints still restore.

`convert` is the one-shot structural change applied to the dense checkpoint
before fine-tuning (SVD factors replace a kernel); `export` turns the final
params into the artifact's tensors (storage.py writes them).

Before `convert`, session.start may hand a method what it asks for:
  method.bind(graph)          # if needs_graph: structured.Graph of the model
  method.set_calibration(model, images, batch_stats)
                              # if needs_calibration: real training batches
  model = method.wrap_model(model)   # always; e.g. xnor's binarised inputs
The flags exist because building the graph and loading calibration batches
cost time, so only methods that declare them pay for it.
"""
from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcnn.losses import path_str

PyTree = Any


class CompressState(NamedTuple):
  inner: PyTree       # the wrapped optimizer's state
  method: PyTree      # the method's state: masks, schedules' bookkeeping ...
  count: jax.Array    # int32: updates applied since compression started


def select(params: PyTree, include: str, exclude: str = '',
           kernels_only: bool = True) -> PyTree:
  """Bool tree: path matches `include` (re.search) and not `exclude`."""
  inc = re.compile(include)
  exc = re.compile(exclude) if exclude else None

  def keep(path, _):
    name = path_str(path)
    if kernels_only and not name.endswith('kernel'):
      return False
    return bool(inc.search(name)) and not (exc and exc.search(name))
  return jax.tree_util.tree_map_with_path(keep, params)


def named_leaves(tree: PyTree) -> dict[str, Any]:
  return {path_str(p): v for p, v in
          jax.tree_util.tree_flatten_with_path(tree)[0]}


class Method:
  """Identity hooks; a method overrides only what it needs.

  `cfg` is the method's config section (e.g. config.compress.prune).
  """
  name = 'none'
  needs_graph: bool = False        # filter_prune: session.start calls bind
  needs_calibration: bool = False  # int8, qat, qcnn: ... set_calibration

  def __init__(self, cfg):
    self.cfg = cfg

  # Set-up, once, before `convert` (session.start).
  def bind(self, graph) -> None:
    """Receives the model's structured.Graph (only if needs_graph)."""
    del graph

  def set_calibration(self, model, images, batch_stats) -> None:
    """Receives calibration batches (only if needs_calibration)."""
    del model, images, batch_stats

  def wrap_model(self, model):
    """The model to train, evaluate and export with (default: unchanged)."""
    return model

  # Structural, once, outside jit.
  def convert(self, params: PyTree) -> PyTree:
    return params

  def init(self, params: PyTree) -> PyTree:
    del params
    return {}

  # Inside the jitted step.
  def pre_forward(self, params: PyTree, state: PyTree) -> PyTree:
    del state
    return params

  def loss(self, params: PyTree, state: PyTree) -> jax.Array:
    del params, state
    return jnp.zeros((), jnp.float32)

  def transform_grads(self, grads: PyTree, state: PyTree) -> PyTree:
    del state
    return grads

  def update_state(self, state: PyTree, params: PyTree,
                   count: jax.Array) -> PyTree:
    """Called after every update with the new params (schedules live here)."""
    del params, count
    return state

  def post_update(self, params: PyTree, state: PyTree) -> PyTree:
    del state
    return params

  def wrap_tx(self, tx: optax.GradientTransformation
              ) -> optax.GradientTransformationExtraArgs:
    return with_method_state(tx, self)

  def eval_params(self, params: PyTree) -> PyTree:
    """Params the unchanged model can evaluate (no method state at hand)."""
    return params

  def oneshot(self, params: PyTree) -> PyTree:
    """Method state of full compression with no training (the 'before
    fine-tuning' point of the report)."""
    return self.init(params)

  # After training, outside jit.
  def export(self, params: PyTree, state: PyTree) -> dict:
    """{'params': inference params, 'meta': json-able info} for storage."""
    return {'params': self.post_update(self.pre_forward(params, state), state),
            'meta': {}}


def with_method_state(tx: optax.GradientTransformation, method: Method
                      ) -> optax.GradientTransformationExtraArgs:
  """Outermost wrapper: carries `method`'s state next to the optimizer's,
  as a typed CompressState (the training plugin finds it there)."""

  def init(params):
    return CompressState(tx.init(params), method.init(params),
                         jnp.zeros((), jnp.int32))

  def update(grads, state, params=None, **extra_args):
    grads = method.transform_grads(grads, state.method)
    updates, inner = optax.with_extra_args_support(tx).update(
        grads, state.inner, params, **extra_args)
    count = state.count + 1
    new_params = optax.apply_updates(params, updates)
    mstate = method.update_state(state.method, new_params, count)
    return updates, CompressState(inner, mstate, count)
  return optax.GradientTransformationExtraArgs(init, update)


def method_state(opt_state: PyTree) -> PyTree:
  if not isinstance(opt_state, CompressState):
    raise TypeError('optimizer state carries no compression state: build the '
                    'optimizer with method.wrap_tx')
  return opt_state.method


# name -> factory(config.compress) -> Method. Later methods register here.
_REGISTRY: dict[str, Callable[[Any], Method]] = {}


def register(name: str, factory: Callable[[Any], Method]) -> None:
  if name in _REGISTRY:
    raise ValueError(f'compression method {name!r} is registered twice')
  _REGISTRY[name] = factory


def list_methods() -> list[str]:
  return sorted(_REGISTRY)


def get_method(compress_cfg) -> Method | None:
  """None when compression is off (compress.method == '')."""
  name = compress_cfg.method
  if not name:
    return None
  if name not in _REGISTRY:
    raise ValueError(f'unknown compression method {name!r}; valid: '
                     f'{", ".join(list_methods())}')
  return _REGISTRY[name](compress_cfg)
