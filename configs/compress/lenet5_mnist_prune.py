"""Han et al. magnitude pruning of the trained LeNet-5 (runs/lenet5_mnist):
global threshold over all kernels, gradual (Zhu & Gupta) to 92.5% sparsity,
EMA of the masked weights, 10 epochs of fine-tuning.

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/lenet5_mnist_prune.py \
      --workdir runs/compress_lenet5_mnist_prune_cfg
Same run as `python -m jaxcnn.compress --workdir runs/lenet5_mnist
--method prune --epochs 10 --lr_scale 0.5 --set prune.sparsity=0.925
--set prune.scope=global --set ema_decay=0.999` (docs/compression.md).
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'lenet5_mnist', 'prune')
  p = c.compress.prune
  p.scope, p.sparsity, p.schedule = 'global', 0.925, 'gradual'
  steps = 4680                     # 10 epochs at 468 steps/epoch
  p.end_step, p.frequency = int(0.6 * steps), steps // 25
  c.num_train_steps = steps
  c.optim.learning_rate = 0.025    # 0.5 x the dense run's, cosine to 0
  c.ema_decay = 0.999
  c.eval_every_steps = c.checkpoint_every_steps = steps
  if arg == 'smoke':
    c.num_train_steps = 4
    p.end_step, p.frequency = 2, 1
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  return c
