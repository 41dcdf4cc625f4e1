"""Layers and activations shared by the model families."""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.ops.lrn import lrn, lrn_caffe
from jaxcnn.ops.pooling import max_pool


def scaled_tanh(x: jax.Array) -> jax.Array:
  """LeCun et al. 1998, appendix A: f(a) = 1.7159 tanh(2a/3)."""
  return 1.7159 * jnp.tanh(2.0 * x / 3.0)


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'relu6': nn.relu6,  # MobileNetV2: bounded for low-precision inference
    # The AlexNet tutorial's example slope for Leaky ReLU is 0.1.
    'leaky_relu': lambda x: nn.leaky_relu(x, negative_slope=0.1),
    'softplus': nn.softplus,
    'tanh': jnp.tanh,
    'scaled_tanh': scaled_tanh,
    'sigmoid': nn.sigmoid,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in _ACTIVATIONS:
    raise ValueError(
        f'unknown activation {name!r}; valid: {", ".join(sorted(_ACTIVATIONS))}')
  return _ACTIVATIONS[name]


class PReLU(nn.Module):
  """He et al. 2015: leaky ReLU with a learned per-channel slope (init 0.25)."""
  init_slope: float = 0.25

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    slope = self.param('slope', nn.initializers.constant(self.init_slope),
                       (x.shape[-1],))
    return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


def activation_layer(name: str) -> Callable[[jax.Array], jax.Array]:
  """Like `get_activation`, plus 'prelu'.

  Call the result inside a parent's `nn.compact` method: for 'prelu' each call
  creates a fresh PReLU submodule, i.e. one set of slopes per layer.
  """
  if name == 'prelu':
    return lambda x: PReLU()(x)
  return get_activation(name)


def lrn_impl(conv: str) -> str:
  """The LRN impl for a model whose CPU convs are `conv` (ops/conv.IMPLS).

  The C++ LRN kernel ('auto') goes where the convs are oneDNN's: a train
  step on one CPU device. With XLA's convs (multi-device meshes, whose
  partitioner would replicate a custom call; exports, which must hold XLA
  ops only; GPU/TPU) the LRN is XLA's too.
  """
  return 'jnp' if conv == 'xla' else 'auto'


def pool_impl(conv: str) -> str:
  """The max-pool impl (ops/pooling.IMPLS) beside `conv`: the C++ kernel
  ('auto') only with oneDNN's convs, by the same reasoning as `lrn_impl`."""
  return 'taps' if conv == 'xla' else 'auto'


class LRN(nn.Module):
  """Local response normalisation over channels (see `jaxcnn.ops.lrn`).

  convention 'tf': window 2*depth_radius+1, alpha on the raw sum (AlexNet
  paper, TF). 'caffe': window `size`, alpha divided by size (Caffe, Paddle
  img_cmrnorm, PyTorch). `bias` is Caffe's k. Defaults are the AlexNet
  paper's k=2, n=5, alpha=1e-4, beta=0.75 in TF form.
  """
  convention: str = 'tf'
  depth_radius: int = 2
  size: int = 5
  bias: float = 2.0
  alpha: float = 1e-4
  beta: float = 0.75
  impl: str = 'jnp'  # jaxcnn.ops.lrn impl; models pass lrn_impl(conv)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.convention == 'tf':
      return lrn(x, self.depth_radius, self.bias, self.alpha, self.beta,
                 impl=self.impl)
    if self.convention == 'caffe':
      return lrn_caffe(x, self.size, self.bias, self.alpha, self.beta,
                       impl=self.impl)
    raise ValueError(f"LRN convention must be 'tf' or 'caffe', "
                     f'got {self.convention!r}')


# He et al. 2015 init, fan-out as in the reference ResNet/MobileNet code: it
# keeps activation variance stable through conv+BN+ReLU stacks.
he_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class ConvBN(nn.Module):
  """Bias-free conv, BatchNorm, optional activation (the BN-net building block).

  BN statistics live in 'batch_stats'; batch statistics are used (and the
  running averages updated, momentum 0.9) only when `train` is True.
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  groups: int = 1
  activation: str | None = 'relu'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    k = self.kernel_size
    x = nn.Conv(self.features, (k, k), strides=self.strides,
                padding=[((k - 1) // 2, k // 2)] * 2,
                feature_group_count=self.groups, use_bias=False,
                kernel_init=he_fan_out, name='conv')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     epsilon=1e-5, name='bn')(x)
    return x if self.activation is None else get_activation(self.activation)(x)


def max_pool_ceil(x: jax.Array, window: int, stride: int,
                  impl: str = 'taps') -> jax.Array:
  """Max pool with Caffe/Paddle 'ceil mode' output size and no padding.

  out = ceil((n - window) / stride) + 1 (at least 1): the last window may hang
  off the edge and then sees only the real pixels. This is how Paddle's
  CIFAR AlexNet keeps a 1x1 map alive through a 3x3 pool.
  """
  pads = []
  for n in x.shape[1:3]:
    out = max(1, -(-(n - window) // stride) + 1)
    pads.append((0, max(0, (out - 1) * stride + window - n)))
  x = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-jnp.inf)
  return max_pool(x, (window, window), (stride, stride), impl=impl)
