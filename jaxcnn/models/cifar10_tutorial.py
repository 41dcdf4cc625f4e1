"""The TensorFlow CIFAR-10 tutorial network (models/tutorials/image/cifar10).

Layer names follow the tutorial so that weight decay can select the
'local3|local4' kernels. Initialisers are the tutorial's: TF's
truncated_normal(stddev) draws N(0, stddev) re-sampled beyond 2 stddev, which
is what `nn.initializers.truncated_normal(stddev)` does.
"""
from __future__ import annotations

import flax.linen as nn
import jax

from jaxcnn.models.layers import LRN, lrn_impl, pool_impl
from jaxcnn.ops import conv as conv_ops
from jaxcnn.ops.pooling import max_pool

_tn = nn.initializers.truncated_normal
_const = nn.initializers.constant


def _norm(name: str, conv: str) -> LRN:
  return LRN(depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75,
             impl=lrn_impl(conv), name=name)


def _pool(x: jax.Array, conv: str) -> jax.Array:
  return max_pool(x, (3, 3), (2, 2), 'SAME', impl=pool_impl(conv))


def _features(x: jax.Array, conv: str) -> jax.Array:
  """conv1 -> pool1 -> norm1 -> conv2 -> norm2 -> pool2; 24x24x3 -> 6x6x64.

  Called inside a parent's compact method, so conv1/conv2 are top-level
  parameter names. The tutorial normalises *after* pooling in block 1 but
  *before* pooling in block 2; that asymmetry is kept.
  `conv`: 'xla' or 'onednn' (jaxcnn/ops/conv.py).
  """
  op = conv_ops.conv_fn(conv)
  x = nn.relu(nn.Conv(64, (5, 5), padding='SAME', kernel_init=_tn(5e-2),
                      bias_init=_const(0.0), name='conv1',
                      conv_general_dilated=op)(x))
  x = _norm('norm1', conv)(_pool(x, conv))
  x = nn.relu(nn.Conv(64, (5, 5), padding='SAME', kernel_init=_tn(5e-2),
                      bias_init=_const(0.1), name='conv2',
                      conv_general_dilated=op)(x))
  return _pool(_norm('norm2', conv)(x), conv)


class Cifar10Tutorial(nn.Module):
  """conv1/conv2 as above, local3 fc 384, local4 fc 192, softmax_linear.

  At 24x24x3: 1,068,298 parameters, 18,470,784 conv+fc multiply-adds.
  """
  num_classes: int = 10
  conv: str = 'xla'  # CPU conv library: ops/conv.py IMPLS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or BN in the tutorial model
    x = _features(x, self.conv)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(384, kernel_init=_tn(0.04), bias_init=_const(0.1),
                         name='local3')(x))
    x = nn.relu(nn.Dense(192, kernel_init=_tn(0.04), bias_init=_const(0.1),
                         name='local4')(x))
    return nn.Dense(self.num_classes, kernel_init=_tn(1 / 192.0),
                    bias_init=_const(0.0), name='softmax_linear')(x)


class Cifar10TutorialLocal(nn.Module):
  """The tutorial's exercise: local3/local4 as locally-connected layers.

  As in cuda-convnet's layers-conv-local cfg: two 3x3 unshared-weight layers
  (64 then 32 filters, SAME) on the 6x6x64 map, then the linear classifier.
  Each of the 36 positions has its own kernel and bias. At 24x24x3:
  2,112,970 parameters.
  """
  num_classes: int = 10
  local_features: tuple[int, int] = (64, 32)
  conv: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = _features(x, self.conv)
    for name, f in zip(('local3', 'local4'), self.local_features):
      x = nn.relu(nn.ConvLocal(f, (3, 3), padding='SAME',
                               kernel_init=_tn(0.04), bias_init=_const(0.1),
                               name=name)(x))
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, kernel_init=_tn(1 / 192.0),
                    bias_init=_const(0.0), name='softmax_linear')(x)
