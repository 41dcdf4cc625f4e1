"""Model registry: `get_model(name, **overrides)` returns a Flax linen module.

Contract every model follows, so training code never special-cases a network:
  * `__call__(self, x, train: bool = False)` takes float NHWC images and returns
    unnormalised logits of shape [batch, num_classes];
  * dropout draws from the 'dropout' RNG stream, only when `train` is True;
  * BatchNorm keeps running statistics in the 'batch_stats' collection and uses
    batch statistics only when `train` is True;
  * `num_classes` is a dataclass field, so configs can override it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn

from jaxcnn.models import lenet
from jaxcnn.models import alexnet, binary, cifar10_tutorial, mobilenet, resnet
from jaxcnn.models import mlp, shufflenet, simple_cnn

# name -> constructor (a module class or a functools.partial of one).
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, ctor: Callable[..., nn.Module]) -> None:
  if name in _REGISTRY:
    raise ValueError(f'model {name!r} is registered twice')
  _REGISTRY[name] = ctor


def list_models() -> list[str]:
  return sorted(_REGISTRY)


def get_model(name: str, **overrides: Any) -> nn.Module:
  """Builds a registered model; `overrides` set its dataclass fields."""
  if name not in _REGISTRY:
    raise ValueError(
        f'unknown model {name!r}; valid names: {", ".join(list_models())}')
  return _REGISTRY[name](**overrides)


def has_field(name: str, field: str) -> bool:
  """Whether registered model `name` has dataclass field `field`."""
  make = _REGISTRY[name]
  cls = make.func if isinstance(make, functools.partial) else make
  return field in getattr(cls, '__dataclass_fields__', {})


register('lenet5', lenet.LeNet5)
register('lenet5_classic', lenet.LeNet5Classic)
register('lenet5_classic_sparse', functools.partial(
    lenet.LeNet5Classic, sparse_c3=True))
register('simple_cnn', simple_cnn.SimpleCNN)
register('cifar10_tutorial', cifar10_tutorial.Cifar10Tutorial)
register('cifar10_tutorial_local', cifar10_tutorial.Cifar10TutorialLocal)
register('alexnet_imagenet', alexnet.AlexNetImageNet)
register('alexnet_cifar_paddle', alexnet.AlexNetCifarPaddle)
register('alexnet_cifar_paddle_nolrn', alexnet.AlexNetCifarPaddleNoLRN)
register('alexnet_cifar', alexnet.AlexNetCifar)
register('alexnet_cifar_nolrn', alexnet.AlexNetCifarNoLRN)
register('mobilenet_v2_cifar', mobilenet.MobileNetV2)
register('shufflenet_v2_cifar', shufflenet.ShuffleNetV2)
register('resnet20_cifar', functools.partial(resnet.CifarResNet, depth=20))
register('bnn_lenet5', binary.BNNLeNet5)
register('bnn_mlp', binary.BNNMLP)
register('bnn_cifar', binary.BinaryCifarNet)
register('bnn_resnet_cifar', functools.partial(binary.BinaryCifarNet,
                                               residual=True))
register('xnor_cifar', functools.partial(binary.BinaryCifarNet, scale=True))
# Hinton et al. 2015, MNIST: 1200-1200 dropout teacher, 800-800 student, and a
# small student where soft targets matter most.
register('mlp', mlp.MLP)
register('mlp_large', functools.partial(mlp.MLP, hidden=(1200, 1200),
                                        dropout_rate=0.5))
register('mlp_small', functools.partial(mlp.MLP, hidden=(64, 64)))
