"""Binary networks: BNN (Courbariaux, Hubara et al.) and XNOR-style layers.

Building blocks:
  * `binarize` is sign with sign(0) = +1, so every value maps to +-1 and
    packs into one bit (jaxcnn/compress/bitpack.py uses the same rule);
  * `sign_ste`: forward sign, backward the straight-through estimator of
    Htanh(x) = clip(x, -1, 1): gradient 1 for |x| <= 1, else 0;
  * `quantize_act(x, bits)`: 1 bit is `sign_ste`; 2..4 bits are uniform
    levels on [-1, 1] (the design notes: raise the activation bits and the
    channel count together, and stay at <= 4 bits);
  * `BinConv` / `BinDense` keep float latent weights ('kernel', so the
    compress methods and weight decay find them) and compute with
    sign(kernel), optionally times alpha = mean|W| per output filter (BWN).

Block order is BatchNorm -> BinActiv -> BinConv -> Pool. First and last
layers stay full precision, and the last layer reads the BatchNorm output of
the last binary block (real-valued), as most later binary nets do.
Latent weights are clipped to [-1, 1] by the 'binary' compress method
(configs/bnn_mnist.py trains with it), which plain training cannot do.
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.ops.pooling import max_pool


def binarize(x: jax.Array) -> jax.Array:
  return jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)


@jax.custom_vjp
def sign_ste(x: jax.Array) -> jax.Array:
  return binarize(x)


def _sign_fwd(x):
  return binarize(x), x


def _sign_bwd(x, g):
  return (g * (jnp.abs(x) <= 1.0).astype(g.dtype),)


sign_ste.defvjp(_sign_fwd, _sign_bwd)


def quantize_act(x: jax.Array, bits: int) -> jax.Array:
  """k-bit activations with a straight-through (Htanh) gradient."""
  if bits == 1:
    return sign_ste(x)
  if not 2 <= bits <= 4:
    raise ValueError(f'activation bits must be 1..4, got {bits}')
  n = float(2 ** bits - 1)
  q = jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * (n / 2.0)) * (2.0 / n) - 1.0
  return htanh_ste(x, q)


def htanh_ste(x: jax.Array, q: jax.Array) -> jax.Array:
  """Value q, gradient that of Htanh(x): 1 for |x| <= 1, else 0 (also at
  the boundary, where jnp.clip's gradient would be 1/2)."""
  inside = jax.lax.stop_gradient((jnp.abs(x) <= 1.0).astype(x.dtype))
  return jax.lax.stop_gradient(q) + (x - jax.lax.stop_gradient(x)) * inside


def filter_scale(kernel: jax.Array) -> jax.Array:
  """BWN alpha: mean |W| over all axes but the last (one per output)."""
  axes = tuple(range(kernel.ndim - 1))
  return jnp.mean(jnp.abs(kernel), axis=axes, keepdims=True)


def binary_weights(kernel: jax.Array, scale: bool) -> jax.Array:
  wb = sign_ste(kernel)
  return wb * filter_scale(kernel) if scale else wb


def scale_output(y, kernel, scale: bool):
  """alpha applied after the +-1 product (not folded into the weights), so
  the float path and bitpack's integer XNOR/popcount path round alike."""
  return y * filter_scale(kernel).reshape(-1).astype(y.dtype) if scale else y


class BinActiv(nn.Module):
  bits: int = 1

  @nn.compact
  def __call__(self, x):
    return quantize_act(x, self.bits)


class BinConv(nn.Module):
  """Conv with binarised weights; NHWC / HWIO, zero padding (pads stay 0)."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: int = 1
  padding: str = 'SAME'
  scale: bool = False

  @nn.compact
  def __call__(self, x):
    k = self.param('kernel', nn.initializers.glorot_uniform(),
                   (*self.kernel_size, x.shape[-1], self.features))
    y = jax.lax.conv_general_dilated(
        x, sign_ste(k).astype(x.dtype), (self.strides, self.strides),
        self.padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return scale_output(y, k, self.scale)


class BinDense(nn.Module):
  features: int
  scale: bool = False

  @nn.compact
  def __call__(self, x):
    k = self.param('kernel', nn.initializers.glorot_uniform(),
                   (x.shape[-1], self.features))
    return scale_output(x @ sign_ste(k).astype(x.dtype), k, self.scale)


def _bn(train: bool, name: str) -> nn.BatchNorm:
  # Momentum 0.9: BNN runs are short, the running statistics must follow.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-4, name=name)


def _pool(x, size: int = 2):
  return max_pool(x, (size, size), (size, size))


class BinaryResidualUnit(nn.Module):
  """x + BinConv3x3(BinActiv(BN(x))): the real-valued shortcut carries what
  the sign throws away (as in Bi-Real Net); same shape in and out."""
  act_bits: int = 1
  scale: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = BinActiv(self.act_bits)(_bn(train, 'bn')(x))
    return x + BinConv(x.shape[-1], (3, 3), scale=self.scale, name='conv')(y)


class BNNLeNet5(nn.Module):
  """LeNet-5 layout with binary C3, C5, F6 (widened, per the design rules).

  C1 float 5x5 -> pool, then BN -> BinActiv -> BinConv C3 5x5 -> pool,
  BN -> BinActiv -> BinConv C5 5x5, BN -> BinActiv -> BinDense F6,
  BN -> float output. 32x32 input (MNIST padded by 2).
  """
  num_classes: int = 10
  features: Sequence[int] = (32, 64, 256)
  hidden: int = 256
  act_bits: int = 1
  scale: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.shape[1:3] != (32, 32):
      raise ValueError(f'BNN LeNet-5 expects 32x32 input, got {x.shape[1:3]}')
    f1, f3, f5 = self.features
    x = _pool(nn.Conv(f1, (5, 5), padding='VALID', name='C1')(x))
    act = functools.partial(BinActiv, self.act_bits)
    x = _bn(train, 'bn3')(x)
    x = _pool(BinConv(f3, (5, 5), padding='VALID', scale=self.scale,
                      name='C3')(act()(x)))
    x = _bn(train, 'bn5')(x)
    x = BinConv(f5, (5, 5), padding='VALID', scale=self.scale,
                name='C5')(act()(x))
    x = x.reshape((x.shape[0], -1))
    x = _bn(train, 'bn6')(x)
    x = BinDense(self.hidden, scale=self.scale, name='F6')(act()(x))
    x = _bn(train, 'bn_out')(x)
    return nn.Dense(self.num_classes, name='output')(x)


class BNNMLP(nn.Module):
  """The BNN paper's MNIST MLP shape: float first layer, binary hidden
  layers, float output; BN -> BinActiv -> BinDense between them."""
  num_classes: int = 10
  hidden: Sequence[int] = (1024, 1024, 1024)
  act_bits: int = 1
  scale: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(self.hidden[0], name='fc1')(x)
    for i, h in enumerate(self.hidden[1:]):
      x = _bn(train, f'bn{i + 2}')(x)
      x = BinDense(h, scale=self.scale, name=f'fc{i + 2}')(
          quantize_act(x, self.act_bits))
    x = _bn(train, 'bn_out')(x)
    return nn.Dense(self.num_classes, name='output')(x)


class BinaryCifarNet(nn.Module):
  """A binary VGG-style CIFAR net (the BNN paper's layout, narrower).

  Float conv1, then per stage: BN -> BinActiv -> BinConv 3x3 (-> pool at the
  end of the stage); `residual` turns every same-width conv into a
  BinaryResidualUnit. BN -> BinActiv -> BinDense hidden, BN -> float output.
  `scale=True` gives XNOR-style per-filter alpha on every binary layer.
  """
  num_classes: int = 10
  stages: Sequence[int] = (64, 128, 256)
  convs_per_stage: int = 2
  hidden: int = 512
  act_bits: int = 1
  scale: bool = False
  residual: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.stages[0], (3, 3), padding='SAME', name='conv1')(x)
    act = functools.partial(BinActiv, self.act_bits)
    for s, f in enumerate(self.stages):
      for j in range(self.convs_per_stage):
        name = f's{s + 1}c{j + 1}'
        if s == 0 and j == 0:
          continue  # conv1 is the float first layer
        if self.residual and x.shape[-1] == f:
          x = BinaryResidualUnit(self.act_bits, self.scale, name=name)(
              x, train)
        else:
          y = act()(_bn(train, f'{name}_bn')(x))
          x = BinConv(f, (3, 3), scale=self.scale, name=name)(y)
      x = _pool(x)
    x = x.reshape((x.shape[0], -1))
    x = _bn(train, 'fc_bn')(x)
    x = BinDense(self.hidden, scale=self.scale, name='fc')(act()(x))
    x = _bn(train, 'out_bn')(x)
    return nn.Dense(self.num_classes, name='output')(x)
