"""Losses: cross-entropy, L2 terms over a chosen subset of weights, and KD."""
from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import optax


def path_str(path) -> str:
  """'conv1/kernel' style name for a tree path, used by every regex filter."""
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)


def param_mask(params: Any, include: str, kernels_only: bool = True) -> Any:
  """Boolean tree: True where the path matches `include` (re.search).

  Biases and BatchNorm scales are skipped when `kernels_only`, following the
  TF tutorial, which decays only weight matrices.
  """
  pattern = re.compile(include)

  def keep(path, _):
    name = path_str(path)
    if kernels_only and not name.endswith('kernel'):
      return False
    return bool(pattern.search(name))
  return jax.tree_util.tree_map_with_path(keep, params)


def cross_entropy(logits: jax.Array, labels: jax.Array,
                  mask: jax.Array | None = None) -> jax.Array:
  """Mean softmax cross-entropy over the (masked) batch."""
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)
  if mask is None:
    return jnp.mean(losses)
  return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def l2_loss(params: Any, mask: Any) -> jax.Array:
  """sum(w^2)/2 over masked leaves: tf.nn.l2_loss summed, as in the tutorial."""
  leaves = [jnp.sum(jnp.square(w)) / 2 for w, m in
            zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m]
  return sum(leaves) if leaves else jnp.zeros((), jnp.float32)


def distillation_loss(student_logits: jax.Array, teacher_logits: jax.Array,
                      labels: jax.Array, temperature: float,
                      hard_weight: float, kind: str = 'kd') -> jax.Array:
  """Hinton et al.: λ·CE(hard) + (1-λ)·T²·soft, batch means, where soft is
  kind='kd':     CE(softmax(t/T), log_softmax(s/T));
  kind='logits': ½‖s/T − t/T‖² summed over classes (Ba & Caruana's logit
                 matching; T² makes its gradient (s − t) for every T).
  The T² factor keeps the soft gradients' scale independent of T. The
  teacher gets no gradient from this loss."""
  t = temperature
  s_t = student_logits.astype(jnp.float32) / t
  t_t = jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) / t
  if kind == 'kd':
    soft = jnp.mean(optax.softmax_cross_entropy(s_t, jax.nn.softmax(t_t)))
  elif kind == 'logits':
    soft = jnp.mean(0.5 * jnp.sum(jnp.square(s_t - t_t), axis=-1))
  else:
    raise ValueError(f'distill.loss {kind!r} not in (kd, logits)')
  hard = cross_entropy(student_logits, labels)
  return hard_weight * hard + (1.0 - hard_weight) * (t ** 2) * soft
