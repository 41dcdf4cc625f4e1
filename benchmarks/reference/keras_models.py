"""TensorFlow/Keras versions of the benchmarked jaxcnn models.

Same layers, widths and parameter counts as jaxcnn/models (the harness checks
the counts); NHWC, Keras' default initialisers, LRN from
`tf.nn.local_response_normalization` (the TF tutorial's own op). Only used by
benchmarks/run.py, and only when tensorflow is installed.
"""
from __future__ import annotations

import keras
from keras import layers
import tensorflow as tf


class _LRN(layers.Layer):
  """The TF tutorial's norm1/norm2 setting (radius 4, alpha 0.001/9)."""

  def call(self, x):
    return tf.nn.local_response_normalization(
        x, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75)


def _pool(x):
  return layers.MaxPool2D(3, 2, padding='same')(x)


def lenet5(shape, num_classes):
  x = inp = keras.Input(shape)
  x = layers.MaxPool2D(2)(layers.Conv2D(6, 5, activation='relu')(x))
  x = layers.MaxPool2D(2)(layers.Conv2D(16, 5, activation='relu')(x))
  x = layers.Flatten()(layers.Conv2D(120, 5, activation='relu')(x))
  x = layers.Dense(84, activation='relu')(x)
  return keras.Model(inp, layers.Dense(num_classes)(x))


def cifar10_tutorial(shape, num_classes):
  x = inp = keras.Input(shape)
  x = layers.Conv2D(64, 5, padding='same', activation='relu')(x)
  x = _LRN()(_pool(x))
  x = layers.Conv2D(64, 5, padding='same', activation='relu')(x)
  x = layers.Flatten()(_pool(_LRN()(x)))
  x = layers.Dense(384, activation='relu')(x)
  x = layers.Dense(192, activation='relu')(x)
  return keras.Model(inp, layers.Dense(num_classes)(x))


def alexnet_cifar(shape, num_classes, use_lrn=True):
  x = inp = keras.Input(shape)
  for i, (f, k) in enumerate(zip((64, 192, 384, 256, 256), (5, 5, 3, 3, 3))):
    x = layers.Conv2D(f, k, padding='same', activation='relu')(x)
    if i < 2:
      x = _pool(_LRN()(x) if use_lrn else x)
    elif i == 4:
      x = _pool(x)
  x = layers.Flatten()(x)
  for _ in range(2):
    x = layers.Dropout(0.5)(layers.Dense(1024, activation='relu')(x))
  return keras.Model(inp, layers.Dense(num_classes)(x))


def _conv_bn(x, f, k=3, stride=1, depthwise=False):
  if depthwise:
    x = layers.DepthwiseConv2D(k, stride, padding='same', use_bias=False)(x)
  else:
    x = layers.Conv2D(f, k, stride, padding='same', use_bias=False)(x)
  return layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)


class _ShortcutA(layers.Layer):
  """ResNet option A: subsample by 2 and zero-pad the new channels."""

  def __init__(self, extra, **kw):
    super().__init__(**kw)
    self.extra = extra

  def call(self, x):
    return tf.pad(x[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0], [0, self.extra]])


def resnet20_cifar(shape, num_classes):
  x = inp = keras.Input(shape)
  x = layers.ReLU()(_conv_bn(x, 16))
  cin = 16
  for stage in range(3):
    for j in range(3):
      cout, stride = 16 * 2**stage, 2 if stage and j == 0 else 1
      y = layers.ReLU()(_conv_bn(x, cout, 3, stride))
      y = _conv_bn(y, cout)
      if stride != 1 or cin != cout:
        x = _ShortcutA(cout - cin)(x)
      x = layers.ReLU()(layers.Add()([x, y]))
      cin = cout
  x = layers.GlobalAveragePooling2D()(x)
  return keras.Model(inp, layers.Dense(num_classes)(x))


def mobilenet_v2_cifar(shape, num_classes):
  stages = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
  relu6 = lambda: layers.ReLU(6.0)  # pylint: disable=unnecessary-lambda-assignment
  x = inp = keras.Input(shape)
  x = relu6()(_conv_bn(x, 32))
  cin = 32
  for t, c, n, s in stages:
    for j in range(n):
      stride = s if j == 0 else 1
      y = x if t == 1 else relu6()(_conv_bn(x, cin * t, 1))
      y = relu6()(_conv_bn(y, None, 3, stride, depthwise=True))
      y = _conv_bn(y, c, 1)
      x = layers.Add()([x, y]) if stride == 1 and cin == c else y
      cin = c
  x = relu6()(_conv_bn(x, 1280, 1))
  x = layers.GlobalAveragePooling2D()(x)
  return keras.Model(inp, layers.Dense(num_classes)(x))


_BUILDERS = {
    'lenet5': lenet5, 'cifar10_tutorial': cifar10_tutorial,
    'alexnet_cifar': alexnet_cifar,
    'alexnet_cifar_nolrn': lambda s, n: alexnet_cifar(s, n, use_lrn=False),
    'resnet20_cifar': resnet20_cifar, 'mobilenet_v2_cifar': mobilenet_v2_cifar,
}


def build(name: str, image_shape: tuple[int, int, int],
          num_classes: int) -> keras.Model:
  if name not in _BUILDERS:
    raise KeyError(f'no Keras reference for model {name!r}')
  return _BUILDERS[name](tuple(image_shape), num_classes)


def param_count(model: keras.Model) -> int:
  """Trainable weights only, as jaxcnn's 'params' (BN statistics excluded)."""
  return int(sum(int(tf.size(w)) for w in model.trainable_weights))
