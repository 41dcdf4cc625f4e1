"""AlexNet (Krizhevsky, Sutskever, Hinton 2012) and its CIFAR-10 variants.

One configurable module; the registered variants are the partials at the
bottom. Five convs (conv1..conv5), three fc layers (fc6, fc7, fc8), ReLU (or
another activation the paper discusses), LRN after conv1 and conv2, 3x3/2
overlapping max-pooling after conv1, conv2 and conv5, dropout on the outputs
of fc6 and fc7.

LRN placement: the paper normalises *before* pooling (conv -> ReLU -> LRN ->
pool), the tutorial text describes conv -> ReLU -> pool -> LRN. Both are
available through `lrn_before_pool`; every variant below uses the paper's
order (Paddle's CIFAR net also normalises before pooling).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax

from jaxcnn.models.layers import (LRN, activation_layer, lrn_impl,
                                  max_pool_ceil, pool_impl)
from jaxcnn.ops import conv as conv_ops
from jaxcnn.ops.pooling import max_pool

# Paper §5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the
# hidden fc layers (to give ReLUs positive input early), 0 elsewhere.
_PAPER_BIAS_ONE = ('conv2', 'conv4', 'conv5', 'fc6', 'fc7')


class AlexNet(nn.Module):
  """Configurable AlexNet; defaults are the ImageNet network of the paper.

  `groups` splits conv2, conv4 and conv5 into independent channel groups:
  groups=2 reproduces the two-GPU model (each GPU's half sees only its own
  half of the previous layer; conv3 and the fc layers see everything).
  """
  num_classes: int = 10
  features: tuple[int, ...] = (96, 256, 384, 384, 256)
  kernel_sizes: tuple[int, ...] = (11, 5, 3, 3, 3)
  conv1_stride: int = 4
  conv1_padding: int | str = 0  # conv2..5 always pad to keep the size
  groups: int = 1
  fc_features: tuple[int, ...] = (4096, 4096)
  dropout_rate: float = 0.5
  activation: str = 'relu'
  # 'valid' (paper: 55->27->13->6), 'same' (TF tutorial style), or 'ceil'
  # (Caffe/Paddle output size, no padding).
  pool_mode: str = 'valid'
  use_lrn: bool = True
  lrn_before_pool: bool = True
  # LRN hyper-parameters (see jaxcnn.ops.lrn); default: the paper's k=2, n=5,
  # alpha=1e-4, beta=0.75 in TF form.
  lrn_convention: str = 'tf'
  lrn_depth_radius: int = 2
  lrn_size: int = 5
  lrn_bias: float = 2.0
  lrn_alpha: float = 1e-4
  lrn_beta: float = 0.75
  conv: str = 'xla'  # CPU conv library: ops/conv.py IMPLS
  init_scheme: str = 'lecun'  # or 'paper'

  def _pool(self, x: jax.Array) -> jax.Array:
    if self.pool_mode == 'ceil':
      return max_pool_ceil(x, 3, 2, pool_impl(self.conv))
    if self.pool_mode not in ('valid', 'same'):
      raise ValueError(f'unknown pool_mode {self.pool_mode!r}')
    return max_pool(x, (3, 3), (2, 2), self.pool_mode.upper(),
                    impl=pool_impl(self.conv))

  def _inits(self, name: str) -> dict:
    if self.init_scheme == 'lecun':
      return {}  # Flax defaults: LeCun-normal kernels, zero biases
    if self.init_scheme == 'paper':
      bias = 1.0 if name in _PAPER_BIAS_ONE else 0.0
      return {'kernel_init': nn.initializers.normal(0.01),
              'bias_init': nn.initializers.constant(bias)}
    raise ValueError("init_scheme must be 'lecun' or 'paper', "
                     f'got {self.init_scheme!r}')

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if len(self.features) != 5 or len(self.kernel_sizes) != 5:
      raise ValueError('AlexNet has exactly five conv layers')
    act = activation_layer(self.activation)

    def norm_pool(x, name):
      norm = LRN(self.lrn_convention, self.lrn_depth_radius, self.lrn_size,
                 self.lrn_bias, self.lrn_alpha, self.lrn_beta,
                 impl=lrn_impl(self.conv), name=name)
      if not self.use_lrn:
        return self._pool(x)
      if self.lrn_before_pool:
        return self._pool(norm(x))
      return norm(self._pool(x))

    for i, (f, k) in enumerate(zip(self.features, self.kernel_sizes)):
      name = f'conv{i + 1}'
      if i == 0:
        stride, pad = self.conv1_stride, self.conv1_padding
      else:
        stride, pad = 1, (k - 1) // 2
      if isinstance(pad, int):
        pad = [(pad, pad)] * 2
      groups = self.groups if name in ('conv2', 'conv4', 'conv5') else 1
      x = act(nn.Conv(f, (k, k), strides=stride, padding=pad,
                      feature_group_count=groups, name=name,
                      conv_general_dilated=conv_ops.conv_fn(self.conv),
                      **self._inits(name))(x))
      if i < 2:
        x = norm_pool(x, f'norm{i + 1}')
      elif i == 4:
        x = self._pool(x)

    x = x.reshape((x.shape[0], -1))
    for j, f in enumerate(self.fc_features):
      name = f'fc{j + 6}'
      x = act(nn.Dense(f, name=name, **self._inits(name))(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name=f'fc{len(self.fc_features) + 6}',
                    **self._inits('fc8'))(x)


# 227x227x3, 1000 classes: 60,965,224 params with groups=2 (the paper's
# network), 62,378,344 with groups=1.
AlexNetImageNet = functools.partial(
    AlexNet, num_classes=1000, groups=2, init_scheme='paper')

# PaddlePaddle CIFAR-10 tutorial AlexNet on 32x32x3, kept for fidelity:
# conv1 11x11/4 pad 1 gives 6x6, and Paddle's ceil-mode pools then shrink the
# map to 3x3 and 1x1 (the conv3..5 group runs on 1x1). img_cmrnorm is the
# Caffe convention (size 5, scale 1e-4 divided by size, power 0.75, k=1).
# 21,622,154 params.
AlexNetCifarPaddle = functools.partial(
    AlexNet, conv1_stride=4, conv1_padding=1, pool_mode='ceil',
    lrn_convention='caffe', lrn_size=5, lrn_bias=1.0, lrn_alpha=1e-4,
    lrn_beta=0.75)
AlexNetCifarPaddleNoLRN = functools.partial(AlexNetCifarPaddle, use_lrn=False)

# A CIFAR-sized AlexNet that learns: 5x5 stride-1 conv1 (no early collapse),
# the TF benchmark widths 64/192/384/256/256, fc 1024/1024, SAME 3x3/2 pools
# (32 -> 16 -> 8 -> 4, or 24 -> 12 -> 6 -> 3 on tutorial crops), and the TF
# CIFAR tutorial's LRN setting (radius 4, bias 1, alpha 0.001/9, beta 0.75),
# which was tuned for this scale; the paper's bias 2 barely normalises.
# 7,706,442 params at 32x32, 5,871,434 at 24x24.
AlexNetCifar = functools.partial(
    AlexNet, features=(64, 192, 384, 256, 256), kernel_sizes=(5, 5, 3, 3, 3),
    conv1_stride=1, conv1_padding='SAME', fc_features=(1024, 1024),
    pool_mode='same', lrn_depth_radius=4, lrn_bias=1.0,
    lrn_alpha=0.001 / 9.0, lrn_beta=0.75)
AlexNetCifarNoLRN = functools.partial(AlexNetCifar, use_lrn=False)
