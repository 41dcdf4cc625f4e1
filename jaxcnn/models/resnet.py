"""CIFAR ResNets of He et al. 2016 ("Deep Residual Learning", §4.2).

3x3 stem with 16 filters, then three stages of n basic blocks (two 3x3 convs
each) with 16, 32 and 64 filters at 32x32, 16x16 and 8x8, global average
pooling and a linear classifier: depth = 6n + 2.

Shortcuts: option 'A' (the paper's CIFAR choice, and the default) is
parameter-free: when a stage halves the resolution, the identity is
subsampled with stride 2 and its new channels are zeros. Option 'B' uses a
1x1 strided conv + BN projection there. With option A, ResNet-20 has
269,722 parameters (the paper's "0.27M"); option B adds 2,752.

`kernel_init`: He-normal init of every conv, 'fan_out' (default; as in
torchvision and fb.resnet.torch) or 'fan_in' (He et al. 2015, eq. 10, the
forward-pass case n_l = k^2 c, c input channels; Caffe's MSRAFiller
default): both are "He init", they differ only where a conv changes width
(stem, first conv of stages 2 and 3). The classifier keeps Flax's default
(lecun-normal kernel, zero bias) either way. BatchNorm follows every conv,
before the ReLU (paper §3.4): momentum 0.9 in Flax's convention (= PyTorch's
0.1), epsilon 1e-5; the paper gives neither (these are Torch's defaults).

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

from jaxcnn.models.layers import get_activation, he_fan_out
from jaxcnn.ops import conv as conv_ops
from jaxcnn.ops.fusion import materialize

_INITS = {
    'fan_out': he_fan_out,
    'fan_in': nn.initializers.variance_scaling(2.0, 'fan_in', 'normal'),
}


class ConvBN(nn.Module):
  """layers.ConvBN (same parameter tree: conv/kernel, bn/scale, bn/bias)
  with a choice of He init; 'fan_out' is layers.ConvBN exactly."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  activation: str | None = 'relu'
  kernel_init: str = 'fan_out'
  conv: str = 'xla'  # CPU conv library: ops/conv.py IMPLS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.kernel_init not in _INITS:
      raise ValueError(f'kernel_init must be one of {sorted(_INITS)}, got '
                       f'{self.kernel_init!r}')
    k = self.kernel_size
    x = nn.Conv(self.features, (k, k), strides=self.strides,
                padding=[((k - 1) // 2, k // 2)] * 2, use_bias=False,
                kernel_init=_INITS[self.kernel_init], name='conv',
                conv_general_dilated=conv_ops.conv_fn(self.conv))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     epsilon=1e-5, name='bn')(x)
    return x if self.activation is None else get_activation(self.activation)(x)


def shortcut_a(x: jax.Array, features: int, strides: int) -> jax.Array:
  """Option A: subsample by `strides` (pixels 0, s, 2s, ...: the centres of
  the strided 3x3 conv's windows) and append zero channels up to
  `features`. No parameters."""
  x = x[:, ::strides, ::strides, :]
  return jnp.pad(x, [(0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])])


class BasicBlock(nn.Module):
  features: int
  strides: int = 1
  shortcut: str = 'A'
  cpu_materialize: bool = True
  kernel_init: str = 'fan_out'
  conv: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    # Only the backward pass has the transposes; in eval it would cost ~7%.
    keep = materialize if self.cpu_materialize and train else (lambda v: v)
    init, conv = self.kernel_init, self.conv
    y = keep(ConvBN(self.features, 3, self.strides, kernel_init=init,
                    conv=conv, name='conv1')(x, train))
    y = ConvBN(self.features, 3, activation=None, kernel_init=init,
               conv=conv, name='conv2')(y, train)
    if self.strides != 1 or x.shape[-1] != self.features:
      if self.shortcut == 'A':
        x = shortcut_a(x, self.features, self.strides)
      elif self.shortcut == 'B':
        x = ConvBN(self.features, 1, self.strides, activation=None,
                   kernel_init=init, conv=conv, name='projection')(x, train)
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
  kernel_init: str = 'fan_out'
  conv: str = 'xla'  # CPU conv library: ops/conv.py IMPLS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if (self.depth - 2) % 6:
      raise ValueError(f'CIFAR ResNet depth must be 6n+2, got {self.depth}')
    n = (self.depth - 2) // 6
    keep = materialize if self.cpu_materialize and train else (lambda v: v)
    x = keep(ConvBN(self.width, 3, kernel_init=self.kernel_init,
                    conv=self.conv, name='stem')(x, train))
    for stage in range(3):
      for j in range(n):
        strides = 2 if stage > 0 and j == 0 else 1
        x = BasicBlock(self.width * 2**stage, strides, self.shortcut,
                       self.cpu_materialize, self.kernel_init,
                       conv=self.conv,
                       name=f'stage{stage + 1}_{j + 1}')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name='classifier')(x)
