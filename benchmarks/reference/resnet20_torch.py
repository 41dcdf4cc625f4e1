"""An independent PyTorch ResNet-20 (He et al. 2016, §4.2) with the paper's
CIFAR recipe, for parity with `configs/resnet20_cifar.py:paper`.

Written from the paper, not from jaxcnn (nothing of jaxcnn is imported):
  * 3x3 conv(16) -> BN -> ReLU, 3 stages x 3 basic blocks (16/32/64
    filters, stride 2 at the start of stages 2 and 3), global average pool,
    10-way linear; BN after every conv, before the ReLU;
  * option-A shortcuts: x[:, :, ::2, ::2] and zero channels appended;
  * He-normal conv init (kaiming_normal_, --init_mode fan_in by default as
    in [13] eq. 10); BN weight 1, bias 0 (PyTorch default; momentum 0.1,
    eps 1e-5); the linear layer: truncated normal std 1/sqrt(64) (the same
    law as Flax's lecun_normal), zero bias;
  * input: per-pixel mean image (of the training array given, or
    --pixel_mean) subtracted, then 4-pixel zero pad, random 32 crop, flip;
  * SGD momentum 0.9 (torch.optim.SGD: coupled weight decay), lr 0.1 x0.1 at
    1/2 and 3/4 of the steps (32k/48k of 64k), batch 128, weight decay 1e-4
    on conv and linear weights (--wd_all: on every parameter);
  * data order: epoch e is np.random.default_rng([seed, e]).permutation(n),
    cut into n // 128 batches, the last partial batch dropped (the same
    convention as jaxcnn/data/pipeline.py; augmentation and init draw from
    torch's own generator, seeded with `seed`).

  python benchmarks/reference/resnet20_torch.py --data DIR/cifar10.npz \
      --epochs 5 --seed 0 --out result.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class Block(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.stride, self.extra = stride, cout - cin

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    if self.stride != 1 or self.extra:
      x = F.pad(x[:, :, ::self.stride, ::self.stride],
                (0, 0, 0, 0, 0, self.extra))
    return F.relu(x + y)


class ResNet20(nn.Module):
  def __init__(self, n: int = 3, num_classes: int = 10,
               init_mode: str = 'fan_in'):
    super().__init__()
    self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    self.bn = nn.BatchNorm2d(16)
    blocks, cin = [], 16
    for stage, width in enumerate((16, 32, 64)):
      for j in range(n):
        blocks.append(Block(cin, width, 2 if stage and not j else 1))
        cin = width
    self.blocks = nn.Sequential(*blocks)
    self.fc = nn.Linear(64, num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode=init_mode,
                                nonlinearity='relu')
    std = (1.0 / 64) ** 0.5 / 0.87962566103423978
    nn.init.trunc_normal_(self.fc.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(self.fc.bias)

  def forward(self, x):
    x = F.relu(self.bn(self.stem(x)))
    x = self.blocks(x)
    return self.fc(x.mean((2, 3)))


def lr_at(step: int, total: int, base: float = 0.1, rate: float = 0.1):
  return base * rate ** ((step >= total // 2) + (step >= 3 * total // 4))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
  """Mean-subtracted NCHW batch -> zero pad 4, random 32 crop, random flip."""
  b = x.shape[0]
  xp = F.pad(x, (4, 4, 4, 4))
  off = torch.randint(0, 9, (b, 2), generator=gen)
  flip = torch.rand(b, generator=gen) < 0.5
  out = torch.empty_like(x)
  for i in range(b):
    t, l = int(off[i, 0]), int(off[i, 1])
    crop = xp[i, :, t:t + 32, l:l + 32]
    out[i] = crop.flip(-1) if flip[i] else crop
  return out


def evaluate(model, x, y, batch=1000):
  model.eval()
  correct, loss = 0, 0.0
  with torch.no_grad():
    for s in range(0, len(x), batch):
      logits = model(x[s:s + batch])
      loss += float(F.cross_entropy(logits, y[s:s + batch], reduction='sum'))
      correct += int((logits.argmax(1) == y[s:s + batch]).sum())
  model.train()
  return correct / len(x), loss / len(x)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data', required=True, help='npz: x_train y_train x_test '
                 'y_test, uint8 NHWC images')
  p.add_argument('--pixel_mean', default='', help='.npy [32,32,3] mean image '
                 '(default: the mean of x_train)')
  p.add_argument('--epochs', type=float, default=164.1)
  p.add_argument('--steps', type=int, default=0, help='> 0: overrides epochs')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--lr', type=float, default=0.1)
  p.add_argument('--wd', type=float, default=1e-4)
  p.add_argument('--wd_all', action='store_true')
  p.add_argument('--init_mode', default='fan_in',
                 choices=('fan_in', 'fan_out'))
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--out', default='')
  a = p.parse_args()
  torch.set_num_threads(a.threads)
  gen = torch.Generator().manual_seed(a.seed)
  torch.manual_seed(a.seed)
  d = np.load(a.data)
  xtr = d['x_train'].astype(np.float32)
  mean = (np.load(a.pixel_mean).astype(np.float32) if a.pixel_mean
          else xtr.mean(0))
  to_t = lambda v: torch.from_numpy(
      np.ascontiguousarray((v - mean).transpose(0, 3, 1, 2)))
  xtr = to_t(xtr)
  xte = to_t(d['x_test'].astype(np.float32))
  ytr = torch.from_numpy(d['y_train'].astype(np.int64))
  yte = torch.from_numpy(d['y_test'].astype(np.int64))
  n = len(xtr)
  spe = n // a.batch
  total = a.steps if a.steps > 0 else int(a.epochs * spe)
  model = ResNet20(init_mode=a.init_mode)
  decay = [q for name, q in model.named_parameters()
           if a.wd_all or name.endswith('weight') and q.dim() > 1]
  rest = [q for q in model.parameters() if all(q is not r for r in decay)]
  opt = torch.optim.SGD([{'params': decay, 'weight_decay': a.wd},
                         {'params': rest, 'weight_decay': 0.0}],
                        lr=a.lr, momentum=0.9)
  curve, step, t0 = [], 0, time.time()
  while step < total:
    epoch, i = divmod(step, spe)
    perm = np.random.default_rng([a.seed, epoch]).permutation(n)
    losses = []
    while i < spe and step < total:
      rows = torch.from_numpy(np.sort(perm[i * a.batch:(i + 1) * a.batch]))
      for g in opt.param_groups:
        g['lr'] = lr_at(step, total, a.lr)
      loss = F.cross_entropy(model(augment(xtr[rows], gen)), ytr[rows])
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      losses.append(float(loss))
      i += 1
      step += 1
    acc, tloss = evaluate(model, xte, yte)
    curve.append({'epoch': epoch + 1, 'step': step, 'test_acc': acc,
                  'test_loss': tloss, 'train_loss': float(np.mean(losses)),
                  'seconds': time.time() - t0})
    print(json.dumps(curve[-1]), flush=True)
  result = {'framework': 'torch', 'torch': torch.__version__,
            'seed': a.seed, 'steps': total, 'steps_per_epoch': spe,
            'params': sum(q.numel() for q in model.parameters()),
            'args': vars(a), 'curve': curve}
  if a.out:
    with open(a.out, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
