"""ResNet-20 (He et al. 2016) on CIFAR-10: the strong teacher for distillation.
The paper reports 91.25% (8.75% error, Table 6).

Commands:
  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/resnet20_cifar.py --workdir runs/resnet20_cifar
  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/resnet20_cifar.py:paper --workdir runs/resnet20_paper
':smoke' runs 3 steps.

Default recipe (not the paper's): pad-4 random crop + flip, per-channel
mean/std, momentum 0.9 (Nesterov), lr 0.1 with warm-up and cosine decay, L2
5e-4, 120.0 epochs. Expected (measured): 88.33% test precision@1 after 120
epochs; ~10 min on an H100 shared with other runs (docs/results.md).

':paper' is He et al. 2016 §4.2 as written, each choice:
  * data: 50k train images, test on the 10k test set (the paper picked the
    schedule on a 45k/5k split, then reports the test set);
  * input: 4-pixel zero pad, random 32x32 crop, random horizontal flip;
    "per-pixel mean subtracted" = normalize 'cifar10_pixel_mean': the 32x32x3
    training mean image (jaxcnn/data/augment.py), subtracted BEFORE padding
    (so the pad is the mean), no std division (input.std = 1, raw 0..255
    units; under BN after the stem the scale does not matter);
  * model: option A shortcuts (stride-2 subsampling + zero channels, no
    parameters; 269,722 parameters = the paper's 0.27M), BN after every conv
    before the ReLU, He-normal init in the paper's own form ([13] eq. 10,
    fan_in: model.kernel_init='fan_in'); BN momentum 0.9 (Flax; PyTorch 0.1)
    and epsilon 1e-5, unstated in the paper;
  * optimiser: SGD, momentum 0.9 (not Nesterov), batch 128, lr 0.1 divided
    by 10 at 32k and 48k iterations, stop at 64k (schedule 'step_50_75' with
    num_train_steps 64,000: boundaries 32,000 and 48,000; 390 steps per epoch
    after dropping the last partial batch, so 164.1 epochs);
  * weight decay 1e-4, coupled (grad += wd * w before momentum, as Caffe and
    torch.optim.SGD), on every conv and the classifier kernel; NOT on BN
    scale/offset nor the classifier bias (jaxcnn's l2 only decays kernels;
    Caffe/Torch code of the time decayed all parameters; the paper does not
    say);
  * evaluation: BN running averages, raw weights (no EMA), every 4,000
    steps. Expected: GPU runs pending (docs/results.md).
"""
from jaxcnn.config_base import (base_config, set_cifar_sgd_recipe,
                                set_cifar_standard_input, set_smoke)


def _paper(c):
  c.model.kernel_init = 'fan_in'
  c.input.normalize = 'cifar10_pixel_mean'
  c.input.mean = (0.0,)            # unused by cifar10_pixel_mean
  c.input.std = (1.0,)             # raw 0..255 units minus the mean image
  c.num_train_steps = 64_000
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.nesterov = False
  c.optim.schedule = 'step_50_75'  # x0.1 at 32k and 48k of 64k
  c.optim.decay_rate = 0.1
  c.optim.warmup_epochs = 0.0
  c.l2.mode = 'coupled'
  c.l2.rate = 1e-4
  c.l2.include = '.*'
  c.eval_every_steps = 4000
  c.checkpoint_every_steps = 4000


def get_config(arg=None):
  c = base_config()
  c.model.name = 'resnet20_cifar'
  c.model.shortcut = 'A'           # parameter-free zero-padded identity
  # CPU: conv inputs kept in memory, not recomputed inside the filter
  # gradients' transposes (jaxcnn/ops/fusion.py); same values, ~1.3x faster.
  c.model.cpu_materialize = True
  set_cifar_standard_input(c)
  set_cifar_sgd_recipe(c, learning_rate=0.1, num_epochs=120.0, weight_decay=5e-4)
  if arg == 'smoke':
    set_smoke(c)
  elif arg == 'paper':
    _paper(c)
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: paper, smoke')
  return c
