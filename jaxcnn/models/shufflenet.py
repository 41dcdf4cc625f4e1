"""ShuffleNetV2 (Ma et al. 2018) for 32x32 inputs.

A stride-1 unit splits the channels in half, leaves one half untouched and
sends the other through 1x1 -> 3x3 depthwise -> 1x1; a stride-2 unit feeds
the whole input to two such branches. Outputs are concatenated and then
shuffled so that the next unit's split mixes information from both branches
(the paper's guidelines G1-G4: equal widths, no group convs, few branches,
few element-wise ops).

CIFAR change: the stem is a stride-1 3x3 conv with no max-pool, so the three
stages run at 16x16, 8x8 and 4x4 for a 32x32 image.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models.layers import ConvBN

# Table 5 of the paper: stage widths and the final 1x1 conv, per multiplier.
_WIDTHS = {
    0.5: ((48, 96, 192), 1024),
    1.0: ((116, 232, 464), 1024),
    1.5: ((176, 352, 704), 1024),
    2.0: ((244, 488, 976), 2048),
}


def channel_shuffle(x: jax.Array, groups: int = 2) -> jax.Array:
  """[..., g*k] -> interleave the g groups: order (0, k, 1, k+1, ...)."""
  *lead, c = x.shape
  x = x.reshape(*lead, groups, c // groups)
  return jnp.swapaxes(x, -1, -2).reshape(*lead, c)


class ShuffleUnit(nn.Module):
  features: int
  strides: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    half = self.features // 2
    if self.strides == 1:
      if x.shape[-1] != self.features:
        raise ValueError('a stride-1 ShuffleNetV2 unit keeps its width')
      shortcut, x = jnp.split(x, 2, axis=-1)
    else:
      # The downsampling branch: depthwise 3x3/2 (linear) then 1x1.
      shortcut = ConvBN(x.shape[-1], 3, 2, groups=x.shape[-1], activation=None,
                        name='short_dw')(x, train)
      shortcut = ConvBN(half, 1, name='short_pw')(shortcut, train)
    y = ConvBN(half, 1, name='pw1')(x, train)
    y = ConvBN(half, 3, self.strides, groups=half, activation=None,
               name='dw')(y, train)
    y = ConvBN(half, 1, name='pw2')(y, train)
    return channel_shuffle(jnp.concatenate([shortcut, y], axis=-1))


class ShuffleNetV2(nn.Module):
  """At width 1.0 and 10 classes: 1,263,854 parameters."""
  num_classes: int = 10
  width: float = 1.0  # one of 0.5, 1.0, 1.5, 2.0
  repeats: tuple[int, int, int] = (4, 8, 4)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.width not in _WIDTHS:
      raise ValueError(f'width must be one of {sorted(_WIDTHS)}')
    stage_widths, head = _WIDTHS[self.width]
    x = ConvBN(24, 3, name='stem')(x, train)
    for i, (c, n) in enumerate(zip(stage_widths, self.repeats)):
      for j in range(n):
        x = ShuffleUnit(c, 2 if j == 0 else 1,
                        name=f'stage{i + 2}_{j + 1}')(x, train)
    x = ConvBN(head, 1, name='head')(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name='classifier')(x)
