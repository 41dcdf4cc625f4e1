"""LeNet-5 (LeCun et al. 1998) in its modern and classic forms.

Input is 32x32xC; MNIST's 28x28 digits are zero-padded by 2 in preprocessing.
With full C3, plain pooling and a linear output, the 1-channel net has exactly
61,706 parameters (SPEC.md §1). Unlike the TF tutorial code this does not
repeat its mistakes: every conv has an activation, the logits are linear and
dropout never touches them.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models.layers import get_activation, scaled_tanh
from jaxcnn.ops import conv as conv_ops
from jaxcnn.ops.pooling import max_pool

# Table I of the paper: which of the 6 S2 maps feed each of the 16 C3 maps.
_C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5),
    (0, 1, 2, 5), (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5),
)


def c3_connection_mask() -> np.ndarray:
  """[6, 16] 0/1 mask; 60 connections x 25 weights + 16 biases = 1516 params."""
  mask = np.zeros((6, 16), np.float32)
  for out, ins in enumerate(_C3_TABLE):
    mask[list(ins), out] = 1.0
  return mask


class Subsample(nn.Module):
  """The paper's S2/S4: 2x2 sum times a trainable coefficient, plus a bias."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    coef = self.param('coef', nn.initializers.ones, (c,))
    bias = self.param('bias', nn.initializers.zeros, (c,))
    pooled = nn.avg_pool(x, (2, 2), strides=(2, 2)) * 4.0
    return pooled * coef + bias


class MaskedConv(nn.Module):
  """VALID conv whose kernel is multiplied by a fixed [in, out] mask."""
  features: int
  kernel_size: int
  mask: tuple[tuple[float, ...], ...]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    kernel = kernel * jnp.asarray(self.mask, kernel.dtype)
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), 'VALID',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias


class LeNet5(nn.Module):
  """Modern LeNet-5: ReLU and max-pooling, linear output layer."""
  num_classes: int = 10
  activation: str = 'relu'
  dropout_rate: float = 0.0  # applied before F6 and the output, never on logits
  conv: str = 'xla'  # CPU conv library: ops/conv.py IMPLS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.shape[1:3] != (32, 32):
      raise ValueError(f'LeNet-5 expects 32x32 input, got {x.shape[1:3]}; '
                       'pad MNIST by 2 (config.input.pad = 2)')
    act = get_activation(self.activation)
    conv = functools.partial(nn.Conv, padding='VALID',
                             conv_general_dilated=conv_ops.conv_fn(self.conv))
    x = act(conv(6, (5, 5), name='C1')(x))
    x = max_pool(x, (2, 2), (2, 2))
    x = act(conv(16, (5, 5), name='C3')(x))
    x = max_pool(x, (2, 2), (2, 2))
    x = act(conv(120, (5, 5), name='C5')(x))
    x = x.reshape((x.shape[0], -1))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = act(nn.Dense(84, name='F6')(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name='output')(x)


class LeNet5Classic(nn.Module):
  """The 1998 network: scaled tanh, trainable subsampling, optional sparse C3.

  The paper's RBF output units are replaced by a linear layer, as every
  re-implementation does, so the logits feed a softmax cross-entropy.
  """
  num_classes: int = 10
  sparse_c3: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    if x.shape[1:3] != (32, 32):
      raise ValueError(f'LeNet-5 expects 32x32 input, got {x.shape[1:3]}')
    x = nn.Conv(6, (5, 5), padding='VALID', name='C1')(x)
    x = scaled_tanh(Subsample(name='S2')(x))
    if self.sparse_c3 and x.shape[-1] == 6:
      mask = tuple(map(tuple, c3_connection_mask().tolist()))
      x = MaskedConv(16, 5, mask, name='C3')(x)
    else:
      x = nn.Conv(16, (5, 5), padding='VALID', name='C3')(x)
    x = scaled_tanh(Subsample(name='S4')(x))
    x = scaled_tanh(nn.Conv(120, (5, 5), padding='VALID', name='C5')(x))
    x = x.reshape((x.shape[0], -1))
    x = scaled_tanh(nn.Dense(84, name='F6')(x))
    return nn.Dense(self.num_classes, name='output')(x)

