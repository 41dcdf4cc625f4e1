"""Pure train and eval steps. Jitting and sharding happen in train.py.

The step takes uint8 batches and does augmentation itself, so the host only
indexes arrays. Metrics stay on the device; the loop fetches them on log steps.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxcnn import losses
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
  distill: 'DistillOptions | None' = None  # None: plain cross-entropy
  # 'bfloat16': mixed precision, forward/backward in bf16 on bf16 copies of
  # the params; master params, optimizer, loss and EMA stay float32.
  precision: str = 'float32'


@dataclasses.dataclass(frozen=True)
class DistillOptions:
  """Knowledge distillation (losses.distillation_loss). Frozen: the teacher's
  variables come in as train_step's `teacher` argument; joint: the model is
  distill.JointModel and its teacher half learns from the labels."""
  temperature: float
  hard_weight: float
  loss: str = 'kd'
  joint: bool = False


def _variables(params, batch_stats):
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


def train_step(state: TrainState, batch: dict, teacher: Any = None, *,
               model, tx, schedule: Callable, options: StepOptions,
               l2_mask: Any, teacher_model=None) -> tuple[TrainState, dict]:
  """`teacher`: a frozen teacher's {'params', 'batch_stats'}, a jit argument
  (never a baked-in constant) that the step reads but does not update."""
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  aug_rng, dropout_rng = jax.random.split(rng)
  images = augment.preprocess_train(batch['image'], aug_rng,
                                    options.input_spec)
  labels = batch['label']
  has_bs = bool(state.batch_stats)
  # Compression hooks (jaxcnn/compress/base.py); the method rides on the tx
  # and its state in opt_state, so ordinary runs take none of these branches.
  method = getattr(tx, 'method', None)
  if method is None and type(state.opt_state).__name__ == 'CompressState':
    raise ValueError('compression state without its method: the optimizer '
                     'was wrapped (e.g. for pmap) after compress.wrap_tx')
  mstate = state.opt_state.method if method is not None else None
  kd = options.distill
  if teacher is not None:  # the same augmented images, inference mode
    teacher_logits = jax.lax.stop_gradient(teacher_model.apply(
        _variables(teacher['params'], teacher['batch_stats']), images,
        train=False))

  def loss_fn(params):
    fwd = method.pre_forward(params, mstate) if method is not None else params
    x = images
    if options.precision == 'bfloat16':
      fwd, x = _to_bf16(fwd), images.astype(jnp.bfloat16)
    out = model.apply(_variables(fwd, state.batch_stats), x,
                      train=True, rngs={'dropout': dropout_rng},
                      mutable=['batch_stats'] if has_bs else False,
                      **({'method': 'both'} if kd and kd.joint else {}))
    logits, new_vars = out if has_bs else (out, {})
    logits = jax.tree.map(lambda v: v.astype(jnp.float32), logits)
    if kd is not None and kd.joint:  # (student, teacher) logits
      logits, t_logits = logits
    ce = losses.cross_entropy(logits, labels)
    loss = ce
    if kd is not None:
      loss = losses.distillation_loss(
          logits, t_logits if kd.joint else teacher_logits, labels,
          kd.temperature, kd.hard_weight, kd.loss)
      if kd.joint:  # the teacher half learns from the labels alone
        loss = loss + losses.cross_entropy(t_logits, labels)
    if options.l2_loss_rate:
      loss = loss + options.l2_loss_rate * losses.l2_loss(params, l2_mask)
    if method is not None:
      loss = loss + method.loss(params, mstate)
    return loss, (logits, ce, new_vars.get('batch_stats', {}))

  (loss, (logits, ce, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema_params
  if options.ema_decay:
    ema = ema_update(ema, params, state.step, options.ema_decay)
  if method is not None:  # e.g. re-apply masks, to the EMA weights too
    params = method.post_update(params, opt_state.method)
    if options.ema_decay:
      ema = method.post_update(ema, opt_state.method)
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
  metrics = {
      'loss': loss,
      'cross_entropy': ce,
      'precision@1': jnp.mean(topk_correct(logits, labels, 1)),
      'top5': jnp.mean(topk_correct(logits, labels, 5)),
      'learning_rate': jnp.asarray(schedule(state.step), jnp.float32),
      'grad_norm': grad_norm,
      'nonfinite': 1.0 - finite.astype(jnp.float32),
  }
  return new_state, metrics


def eval_step(params: Any, batch_stats: Any, batch: dict, *, model,
              input_spec: augment.InputSpec) -> dict:
  """Sums over the masked batch; divide by 'count' after summing batches."""
  images = augment.preprocess_eval(batch['image'], input_spec)
  logits = model.apply(_variables(params, batch_stats), images, train=False)
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
  return jax.nn.softmax(model.apply(_variables(params, batch_stats), x,
                                    train=False))
