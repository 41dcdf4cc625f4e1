"""Pure train and eval steps. Jitting and sharding happen in train.py.

The step takes uint8 batches and does augmentation itself, so the host only
indexes arrays. Metrics stay on the device; the loop fetches them on log steps.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxcnn import losses
from jaxcnn import plugins as plugins_lib
from jaxcnn.data import augment
from jaxcnn.optim import ema_update
from jaxcnn.state import TrainState


@dataclasses.dataclass(frozen=True)
class StepOptions:
  """Static settings of the train step (hashable, so safe to close over)."""
  input_spec: augment.InputSpec
  l2_loss_rate: float = 0.0    # rate * sum(w^2)/2 added to the loss
  ema_decay: float = 0.0       # 0: no EMA
  skip_nonfinite_updates: bool = False
  # 'bfloat16': mixed precision, forward/backward in bf16 on bf16 copies of
  # the params; master params, optimizer, loss and EMA stay float32.
  precision: str = 'float32'


def options_from_config(config) -> StepOptions:
  return StepOptions(
      input_spec=augment.spec_from_config(config.input),
      l2_loss_rate=config.l2.rate if config.l2.mode == 'loss' else 0.0,
      ema_decay=config.ema_decay,
      skip_nonfinite_updates=config.skip_nonfinite_updates,
      precision=config.precision)


def variables(params, batch_stats):
  """The model's variable dict (no 'batch_stats' key for nets without BN)."""
  return {'params': params, 'batch_stats': batch_stats} if batch_stats else {
      'params': params}


def _to_bf16(tree: Any) -> Any:
  return jax.tree.map(
      lambda v: v.astype(jnp.bfloat16)
      if jnp.issubdtype(v.dtype, jnp.floating) else v, tree)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """1.0 where the label is among the top `k` logits, ties broken as
  `lax.top_k` does (lower class index first).

  Counted per example from the label's rank rather than with `lax.top_k`:
  XLA's SPMD partitioner cannot split TopK over the batch, so with a sharded
  batch it all-gathered the logits, a second collective beside the gradient
  all-reduce that nothing ordered with it. The rank form is elementwise plus
  a reduction over classes: it partitions over the batch with no collective,
  and each step keeps one chain of collectives (tests/collectives.py checks
  the shipped configs). The multi-device CPU hang of issue 16 had another
  cause: see parallel.Throttle.
  """
  k = min(k, logits.shape[-1])
  label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  classes = jnp.arange(logits.shape[-1])
  ahead = (logits > label_logit) | ((logits == label_logit) &
                                    (classes < labels[:, None]))
  return (jnp.sum(ahead, axis=-1) < k).astype(jnp.float32)


def loss_fn(params, *, state: TrainState, images, labels, dropout_rng,
            model, options: StepOptions, l2_mask, plugins=(), pstates=(),
            extras=(), capture_intermediates: bool = False):
  """The one training objective, shared by train_step and the summary step:
  forward on the plugins' view of `params`, cross-entropy, L2, then each
  plugin's objective (which sees the batch and the logits).

  Returns (loss, aux): aux holds 'logits' (float32), 'cross_entropy',
  'batch_stats' (updated), 'forward_params', and with
  capture_intermediates (the summary step) 'intermediates'."""
  fwd = plugins_lib.forward_params(plugins, pstates, params)
  x = images
  if options.precision == 'bfloat16':
    fwd, x = _to_bf16(fwd), images.astype(jnp.bfloat16)
  mutable = (['batch_stats'] if state.batch_stats else []) + (
      ['intermediates'] if capture_intermediates else [])
  out = model.apply(variables(fwd, state.batch_stats), x, train=True,
                    rngs={'dropout': dropout_rng}, mutable=mutable or False,
                    capture_intermediates=capture_intermediates,
                    **plugins_lib.apply_kwargs(plugins))
  outputs, new_vars = out if mutable else (out, {})
  outputs = jax.tree.map(lambda v: v.astype(jnp.float32), outputs)
  logits, aux = plugins_lib.split_outputs(plugins, outputs)
  ce = losses.cross_entropy(logits, labels)
  loss = ce
  if options.l2_loss_rate:
    loss = loss + options.l2_loss_rate * losses.l2_loss(params, l2_mask)
  for p, ps, a, e in zip(plugins, pstates, aux, extras):
    loss = p.objective(loss, plugins_lib.LossInputs(
        params, ps, images, labels, logits, a, e, ce))
  aux = {'logits': logits, 'cross_entropy': ce, 'forward_params': fwd,
         'batch_stats': new_vars.get('batch_stats', {})}
  if capture_intermediates:
    aux['intermediates'] = new_vars['intermediates']
  return loss, aux


def step_objective(state: TrainState, batch: dict, extras: tuple = (), *,
                   model, options: StepOptions, l2_mask, plugins: tuple = (),
                   capture_intermediates: bool = False):
  """(params -> (loss, aux), augmented images, labels) of this step: the
  RNG folded with the step, the on-device augmentation, loss_fn bound."""
  extras = extras or (None,) * len(plugins)
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  aug_rng, dropout_rng = jax.random.split(rng)
  images = augment.preprocess_train(batch['image'], aug_rng,
                                    options.input_spec)
  labels = batch['label']
  objective = functools.partial(
      loss_fn, state=state, images=images, labels=labels,
      dropout_rng=dropout_rng, model=model, options=options, l2_mask=l2_mask,
      plugins=plugins, pstates=plugins_lib.states(plugins, state.opt_state),
      extras=extras, capture_intermediates=capture_intermediates)
  return objective, images, labels


def train_step(state: TrainState, batch: dict, *extras, model, tx,
               schedule: Callable, options: StepOptions, l2_mask: Any,
               plugins: tuple = ()) -> tuple[TrainState, dict]:
  """rng -> augment -> value_and_grad(loss_fn) -> update -> EMA ->
  plugins' post-update -> metrics. `extras`: one jit argument per plugin
  (plugins.extra_args), e.g. a frozen teacher's variables."""
  objective, images, labels = step_objective(
      state, batch, extras, model=model, options=options, l2_mask=l2_mask,
      plugins=plugins)
  (loss, aux), grads = jax.value_and_grad(objective,
                                          has_aux=True)(state.params)
  logits, ce, batch_stats = aux['logits'], aux['cross_entropy'], \
      aux['batch_stats']
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema_params
  if options.ema_decay:
    ema = ema_update(ema, params, state.step, options.ema_decay)
  new_pstates = plugins_lib.states(plugins, opt_state)
  params = plugins_lib.post_update(plugins, new_pstates, params)
  if options.ema_decay:  # e.g. masks re-applied to the EMA weights too
    ema = plugins_lib.post_update(plugins, new_pstates, ema)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  new_state = state.replace(step=state.step + 1, params=params,
                            batch_stats=batch_stats, opt_state=opt_state,
                            ema_params=ema)
  if options.skip_nonfinite_updates:
    # Keep the old values but still advance the step, so the data order and
    # RNG stream stay the same as in a run without the bad batch.
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                             new_state, state.replace(step=state.step + 1))
  return new_state, _train_metrics(loss, ce, logits, labels, grad_norm,
                                   finite, schedule(state.step))


def _train_metrics(loss, ce, logits, labels, grad_norm, finite, lr) -> dict:
  return {
      'loss': loss,
      'cross_entropy': ce,
      'precision@1': jnp.mean(topk_correct(logits, labels, 1)),
      'top5': jnp.mean(topk_correct(logits, labels, 5)),
      'learning_rate': jnp.asarray(lr, jnp.float32),
      'grad_norm': grad_norm,
      'nonfinite': 1.0 - finite.astype(jnp.float32),
  }


def eval_step(params: Any, batch_stats: Any, batch: dict, *, model,
              input_spec: augment.InputSpec) -> dict:
  """Sums over the masked batch; divide by 'count' after summing batches."""
  images = augment.preprocess_eval(batch['image'], input_spec)
  logits = model.apply(variables(params, batch_stats), images, train=False)
  labels, mask = batch['label'], batch['mask']
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)
  return {
      'loss': jnp.sum(ce * mask),
      'correct': jnp.sum(topk_correct(logits, labels, 1) * mask),
      'top5': jnp.sum(topk_correct(logits, labels, 5) * mask),
      'count': jnp.sum(mask),
  }


def predict_step(params: Any, batch_stats: Any, images: jax.Array, *, model,
                 input_spec: augment.InputSpec) -> jax.Array:
  x = augment.preprocess_eval(images, input_spec)
  return jax.nn.softmax(model.apply(variables(params, batch_stats), x,
                                    train=False))
