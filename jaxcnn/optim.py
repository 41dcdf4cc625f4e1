"""Optimizer factory: momentum SGD (or Adam), LR schedules, coupled L2, EMA.

Schedules are optax schedules of the optimizer step. The Paddle 'discexp'
schedule counts samples seen, so it needs the global batch size.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxcnn.losses import param_mask


def staircase_exponential(base_lr: float, decay_rate: float,
                          decay_steps: int) -> optax.Schedule:
  """TF's exponential_decay(staircase=True): lr * rate^floor(step/decay_steps)."""
  return optax.exponential_decay(base_lr, decay_steps, decay_rate,
                                 staircase=True)


def discexp(base_lr: float, decay_a: float, decay_b: float,
            batch_size: int) -> optax.Schedule:
  """Paddle 'discexp': lr * a^floor(samples_seen / b), samples = step * batch."""
  def schedule(step):
    samples = jnp.asarray(step, jnp.float32) * batch_size
    return base_lr * decay_a ** jnp.floor(samples / decay_b)
  return schedule


def step_50_75(base_lr: float, decay_rate: float,
               total_steps: int) -> optax.Schedule:
  """lr, then lr * rate from step total/2, then lr * rate^2 from 3*total/4.

  He et al. 2016's CIFAR schedule with rate 0.1 and 64k steps: 0.1 for
  steps 0..31999, 0.01 from 32,000, 0.001 from 48,000 (step = the
  optimizer's count, 0 for the first update, as Caffe's iter). Defined by
  fractions, so a shortened run keeps the same shape.
  """
  if not 0.0 < decay_rate <= 1.0:
    raise ValueError(f'optim.decay_rate must be in (0, 1] for step_50_75, '
                     f'got {decay_rate!r}')
  first, second = total_steps // 2, (3 * total_steps) // 4

  def schedule(step):
    step = jnp.asarray(step)
    n = (step >= first).astype(jnp.float32) + (step >= second)
    return base_lr * decay_rate ** n
  return schedule


def make_schedule(cfg, steps_per_epoch: int, total_steps: int,
                  batch_size: int) -> optax.Schedule:
  o = cfg.optim
  if o.schedule == 'constant':
    return optax.constant_schedule(o.learning_rate)
  if o.schedule == 'staircase_exp':
    return staircase_exponential(o.learning_rate, o.decay_rate,
                                 max(1, int(o.decay_epochs * steps_per_epoch)))
  if o.schedule == 'discexp':
    return discexp(o.learning_rate, o.discexp_a, o.discexp_b, batch_size)
  if o.schedule == 'step_50_75':
    return step_50_75(o.learning_rate, o.decay_rate, total_steps)
  if o.schedule == 'cosine':
    warmup = int(o.warmup_epochs * steps_per_epoch)
    if warmup:
      return optax.warmup_cosine_decay_schedule(
          0.0, o.learning_rate, warmup, max(total_steps, warmup + 1))
    return optax.cosine_decay_schedule(o.learning_rate, max(total_steps, 1))
  raise ValueError(f'unknown schedule {o.schedule!r}; valid: constant, '
                   'staircase_exp, discexp, step_50_75, cosine')


def make_tx(cfg, params: Any, schedule: optax.Schedule
            ) -> optax.GradientTransformation:
  """Momentum SGD or Adam; with l2.mode == 'coupled', grad += rate * w first
  (Paddle)."""
  parts = []
  if cfg.l2.mode == 'coupled' and cfg.l2.rate:
    parts.append(optax.add_decayed_weights(
        cfg.l2.rate, mask=param_mask(params, cfg.l2.include)))
  if cfg.optim.optimizer == 'adam':  # momentum is Adam's b1
    parts.append(optax.adam(schedule, b1=cfg.optim.momentum))
  else:
    parts.append(optax.sgd(schedule, momentum=cfg.optim.momentum or None,
                           nesterov=cfg.optim.nesterov))
  return optax.chain(*parts)


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """TF ExponentialMovingAverage(num_updates=step): min(d, (1+t)/(10+t))."""
  t = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


def ema_update(ema: Any, params: Any, step: jax.Array, decay: float) -> Any:
  d = ema_decay_at(step, decay)
  return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)
