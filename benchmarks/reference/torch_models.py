"""PyTorch versions of the benchmarked jaxcnn models, for speed comparison.

Same layers, widths and parameter counts as jaxcnn/models (the harness checks
the counts); NCHW tensors, PyTorch's default initialisers. Only used by
benchmarks/run.py, and only when torch is installed.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def _tutorial_lrn() -> nn.Module:
  # TF convention radius 4, alpha 0.001/9 on the raw sum == PyTorch (Caffe
  # convention) size 9, alpha 0.001 (divided by size), k 1, beta 0.75.
  return nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)


class LeNet5(nn.Module):
  def __init__(self, in_ch: int = 1, num_classes: int = 10):
    super().__init__()
    self.c1 = nn.Conv2d(in_ch, 6, 5)
    self.c3 = nn.Conv2d(6, 16, 5)
    self.c5 = nn.Conv2d(16, 120, 5)
    self.f6 = nn.Linear(120, 84)
    self.out = nn.Linear(84, num_classes)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.c1(x)), 2)
    x = F.max_pool2d(F.relu(self.c3(x)), 2)
    x = torch.flatten(F.relu(self.c5(x)), 1)
    return self.out(F.relu(self.f6(x)))


def _same_pool(x):
  # TF 'SAME' 3x3/2 pooling on even sizes pads one on the bottom/right only.
  return F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float('-inf')), 3, 2)


class Cifar10Tutorial(nn.Module):
  def __init__(self, num_classes: int = 10, size: int = 24):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 5, padding=2)
    self.conv2 = nn.Conv2d(64, 64, 5, padding=2)
    self.norm = _tutorial_lrn()
    flat = 64 * (size // 4) ** 2
    self.local3 = nn.Linear(flat, 384)
    self.local4 = nn.Linear(384, 192)
    self.softmax_linear = nn.Linear(192, num_classes)

  def forward(self, x):
    x = self.norm(_same_pool(F.relu(self.conv1(x))))
    x = _same_pool(self.norm(F.relu(self.conv2(x))))
    # NHWC flatten order is irrelevant for speed; the shapes match jaxcnn's.
    x = torch.flatten(x, 1)
    x = F.relu(self.local4(F.relu(self.local3(x))))
    return self.softmax_linear(x)


class AlexNetCifar(nn.Module):
  def __init__(self, num_classes: int = 10, size: int = 32,
               use_lrn: bool = True):
    super().__init__()
    w = (64, 192, 384, 256, 256)
    k = (5, 5, 3, 3, 3)
    chans = (3,) + w
    self.convs = nn.ModuleList(
        nn.Conv2d(chans[i], w[i], k[i], padding=k[i] // 2) for i in range(5))
    self.norm = _tutorial_lrn() if use_lrn else nn.Identity()
    self.fc6 = nn.Linear(256 * (-(-size // 8)) ** 2, 1024)
    self.fc7 = nn.Linear(1024, 1024)
    self.fc8 = nn.Linear(1024, num_classes)
    self.drop = nn.Dropout(0.5)

  def forward(self, x):
    for i, conv in enumerate(self.convs):
      x = F.relu(conv(x))
      if i < 2:
        x = _same_pool(self.norm(x))
      elif i == 4:
        x = _same_pool(x)
    x = torch.flatten(x, 1)
    x = self.drop(F.relu(self.fc6(x)))
    x = self.drop(F.relu(self.fc7(x)))
    return self.fc8(x)


def _conv_bn(cin, cout, k=3, stride=1, groups=1):
  return nn.Sequential(
      nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
      nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5))


class _Basic(nn.Module):
  def __init__(self, cin, cout, stride):
    super().__init__()
    self.a = _conv_bn(cin, cout, 3, stride)
    self.b = _conv_bn(cout, cout, 3)
    self.stride, self.extra = stride, cout - cin

  def forward(self, x):
    y = self.b(F.relu(self.a(x)))
    if self.stride != 1 or self.extra:  # option A: subsample + zero channels
      x = F.pad(x[:, :, ::self.stride, ::self.stride],
                (0, 0, 0, 0, 0, self.extra))
    return F.relu(x + y)


class ResNet20(nn.Module):
  def __init__(self, num_classes: int = 10):
    super().__init__()
    self.stem = _conv_bn(3, 16)
    blocks, cin = [], 16
    for stage in range(3):
      for j in range(3):
        cout = 16 * 2**stage
        blocks.append(_Basic(cin, cout, 2 if stage and j == 0 else 1))
        cin = cout
    self.blocks = nn.Sequential(*blocks)
    self.classifier = nn.Linear(64, num_classes)

  def forward(self, x):
    x = self.blocks(F.relu(self.stem(x)))
    return self.classifier(x.mean((2, 3)))


_MB_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
              (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class _Inverted(nn.Module):
  def __init__(self, cin, cout, stride, t):
    super().__init__()
    hidden = cin * t
    layers = [] if t == 1 else [_conv_bn(cin, hidden, 1), nn.ReLU6()]
    layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(),
               _conv_bn(hidden, cout, 1)]
    self.body = nn.Sequential(*layers)
    self.residual = stride == 1 and cin == cout

  def forward(self, x):
    y = self.body(x)
    return x + y if self.residual else y


class MobileNetV2(nn.Module):
  def __init__(self, num_classes: int = 10):
    super().__init__()
    layers, cin = [_conv_bn(3, 32), nn.ReLU6()], 32
    for t, c, n, s in _MB_STAGES:
      for j in range(n):
        layers.append(_Inverted(cin, c, s if j == 0 else 1, t))
        cin = c
    layers += [_conv_bn(cin, 1280, 1), nn.ReLU6()]
    self.features = nn.Sequential(*layers)
    self.classifier = nn.Linear(1280, num_classes)

  def forward(self, x):
    return self.classifier(self.features(x).mean((2, 3)))


def build(name: str, image_shape: tuple[int, int, int],
          num_classes: int) -> nn.Module:
  """`name` is a jaxcnn registry name; image_shape is the model input HWC."""
  h, _, c = image_shape
  if name == 'lenet5':
    return LeNet5(c, num_classes)
  if name == 'cifar10_tutorial':
    return Cifar10Tutorial(num_classes, h)
  if name in ('alexnet_cifar', 'alexnet_cifar_nolrn'):
    return AlexNetCifar(num_classes, h, name == 'alexnet_cifar')
  if name == 'resnet20_cifar':
    return ResNet20(num_classes)
  if name == 'mobilenet_v2_cifar':
    return MobileNetV2(num_classes)
  raise KeyError(f'no PyTorch reference for model {name!r}')


def param_count(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())
