"""A small conv-pool-conv-pool-fc baseline: quick to train on CPU, useful as
a sanity check and as a student for distillation."""
from __future__ import annotations

import flax.linen as nn
import jax

from jaxcnn.models.layers import activation_layer
from jaxcnn.ops import conv as conv_ops
from jaxcnn.ops.pooling import max_pool


class SimpleCNN(nn.Module):
  """3x3 conv -> 2x2 max-pool, twice, then one hidden fc layer.

  At 32x32x3 with the defaults: 545,098 parameters.
  """
  num_classes: int = 10
  features: tuple[int, int] = (32, 64)
  hidden: int = 128
  activation: str = 'relu'
  dropout_rate: float = 0.0  # on the hidden layer only, never on logits
  conv: str = 'xla'  # CPU conv library: ops/conv.py IMPLS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = activation_layer(self.activation)
    for i, f in enumerate(self.features):
      x = act(nn.Conv(f, (3, 3), padding='SAME', name=f'conv{i + 1}',
                      conv_general_dilated=conv_ops.conv_fn(self.conv))(x))
      x = max_pool(x, (2, 2), (2, 2))
    x = x.reshape((x.shape[0], -1))
    x = act(nn.Dense(self.hidden, name='fc1')(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name='output')(x)
