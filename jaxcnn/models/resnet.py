"""CIFAR ResNets of He et al. 2016 ("Deep Residual Learning", §4.2).

3x3 stem with 16 filters, then three stages of n basic blocks (two 3x3 convs
each) with 16, 32 and 64 filters at 32x32, 16x16 and 8x8, global average
pooling and a linear classifier: depth = 6n + 2.

Shortcuts: option 'A' (the paper's CIFAR choice, and the default) is
parameter-free: when a stage halves the resolution, the identity is
subsampled with stride 2 and its new channels are zeros. Option 'B' uses a
1x1 strided conv + BN projection there. With option A, ResNet-20 has
269,722 parameters (the paper's "0.27M"); option B adds 2,752.

`cpu_materialize` (default on) keeps each conv input in memory on CPU
(ops/fusion.py): XLA:CPU otherwise recomputes the BN/add/relu chain inside
the transposed copies its filter gradients read; ResNet-20's CPU step is
~1.3x faster with it. Train mode only; same values on every platform; a
no-op off CPU.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models.layers import ConvBN
from jaxcnn.ops.fusion import materialize


class BasicBlock(nn.Module):
  features: int
  strides: int = 1
  shortcut: str = 'A'
  cpu_materialize: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    # Only the backward pass has the transposes; in eval it would cost ~7%.
    keep = materialize if self.cpu_materialize and train else (lambda v: v)
    y = keep(ConvBN(self.features, 3, self.strides, name='conv1')(x, train))
    y = ConvBN(self.features, 3, activation=None, name='conv2')(y, train)
    if self.strides != 1 or x.shape[-1] != self.features:
      if self.shortcut == 'A':
        x = x[:, ::self.strides, ::self.strides, :]
        extra = self.features - x.shape[-1]
        x = jnp.pad(x, [(0, 0), (0, 0), (0, 0), (0, extra)])
      elif self.shortcut == 'B':
        x = ConvBN(self.features, 1, self.strides, activation=None,
                   name='projection')(x, train)
      else:
        raise ValueError(f"shortcut must be 'A' or 'B', got {self.shortcut!r}")
    return keep(nn.relu(x + y))


class CifarResNet(nn.Module):
  """Depth 20/32/44/56/110 (6n+2); ResNet-20 by default."""
  num_classes: int = 10
  depth: int = 20
  width: int = 16
  shortcut: str = 'A'
  cpu_materialize: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if (self.depth - 2) % 6:
      raise ValueError(f'CIFAR ResNet depth must be 6n+2, got {self.depth}')
    n = (self.depth - 2) // 6
    keep = materialize if self.cpu_materialize and train else (lambda v: v)
    x = keep(ConvBN(self.width, 3, name='stem')(x, train))
    for stage in range(3):
      for j in range(n):
        strides = 2 if stage > 0 and j == 0 else 1
        x = BasicBlock(self.width * 2**stage, strides, self.shortcut,
                       self.cpu_materialize,
                       name=f'stage{stage + 1}_{j + 1}')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name='classifier')(x)
