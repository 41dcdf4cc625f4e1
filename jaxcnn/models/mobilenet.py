"""MobileNetV2 (Sandler et al. 2018) for 32x32 inputs.

Inverted residual blocks: 1x1 expansion (ReLU6) -> 3x3 depthwise (ReLU6) ->
1x1 linear projection; the residual is added only when the block keeps both
resolution and width. The projection has no activation because ReLU on a
low-dimensional bottleneck destroys information (the paper's "linear
bottleneck" argument).

CIFAR changes, as in the common CIFAR ports: the stem conv and the second
stage use stride 1 instead of 2, so a 32x32 image reaches the head at 4x4
rather than 1x1. Everything else, including the 1280-wide head, follows
Table 2 of the paper.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models.layers import ConvBN

# (expansion t, output channels c, repeats n, first stride s) from Table 2,
# with the CIFAR stride change in the second row.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(v: float, divisor: int = 8) -> int:
  """Round a scaled width to a multiple of 8 without losing more than 10%."""
  rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * v else rounded


class InvertedResidual(nn.Module):
  features: int
  strides: int
  expansion: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_ch = x.shape[-1]
    hidden = in_ch * self.expansion
    y = x
    if self.expansion != 1:
      y = ConvBN(hidden, 1, activation='relu6', name='expand')(y, train)
    y = ConvBN(hidden, 3, self.strides, groups=hidden, activation='relu6',
               name='depthwise')(y, train)
    y = ConvBN(self.features, 1, activation=None, name='project')(y, train)
    if self.strides == 1 and in_ch == self.features:
      return x + y
    return y


class MobileNetV2(nn.Module):
  """At width 1.0 and 10 classes: 2,236,682 parameters."""
  num_classes: int = 10
  width_multiplier: float = 1.0
  dropout_rate: float = 0.0  # before the classifier (torchvision uses 0.2)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    w = self.width_multiplier
    x = ConvBN(make_divisible(32 * w), 3, activation='relu6',
               name='stem')(x, train)
    for i, (t, c, n, s) in enumerate(_STAGES):
      for j in range(n):
        x = InvertedResidual(make_divisible(c * w), s if j == 0 else 1, t,
                             name=f'block{i + 1}_{j + 1}')(x, train)
    # The paper never narrows the head below 1280.
    head = make_divisible(1280 * max(1.0, w))
    x = ConvBN(head, 1, activation='relu6', name='head')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name='classifier')(x)
