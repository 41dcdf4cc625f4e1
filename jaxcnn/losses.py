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
                      hard_weight: float) -> jax.Array:
  """Hinton et al.: λ·CE(hard) + (1-λ)·T²·CE(softmax(t/T), s/T)."""
  t = temperature
  soft_targets = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits) / t)
  soft = jnp.mean(optax.softmax_cross_entropy(student_logits / t, soft_targets))
  hard = cross_entropy(student_logits, labels)
  return hard_weight * hard + (1.0 - hard_weight) * (t ** 2) * soft
