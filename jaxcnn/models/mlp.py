"""Fully connected nets for the Hinton et al. (2015) MNIST distillation
setting: a large, dropout-regularised teacher and small students.

Sizes are fields, so the registry's variants are functools.partials and a
config can still override `hidden`.
"""
from __future__ import annotations

import flax.linen as nn
import jax

from jaxcnn.models.layers import activation_layer


class MLP(nn.Module):
  """Flatten -> [Dense -> act -> dropout] per hidden width -> Dense logits."""
  num_classes: int = 10
  hidden: tuple[int, ...] = (800, 800)
  activation: str = 'relu'
  dropout_rate: float = 0.0  # hidden layers only, never on the logits

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = activation_layer(self.activation)
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = act(nn.Dense(width, name=f'fc{i + 1}')(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name='output')(x)
