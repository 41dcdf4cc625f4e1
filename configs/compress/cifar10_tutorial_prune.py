"""Magnitude pruning of the TF tutorial net (runs/cifar10_tutorial_fast) to
85% sparsity (global threshold, gradual schedule), 4 epochs of fine-tuning.

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_prune.py \
      --workdir runs/compress_cifar10_tutorial_prune_cfg
  ...:sparse_reg  L1 + group lasso in the loss for the first half, then a
                  one-shot prune of the near-zero weights and fine-tuning.
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'cifar10_tutorial', 'prune', 'fast')
  p = c.compress.prune
  p.scope, p.sparsity, p.schedule = 'global', 0.85, 'gradual'
  steps = 1560                     # 4 epochs at 390 steps/epoch
  p.end_step, p.frequency = int(0.6 * steps), steps // 25
  c.num_train_steps = steps
  c.optim.learning_rate = 0.005    # 0.25 x the dense run's, cosine to 0
  c.optim.warmup_epochs = 0.0
  c.eval_every_steps = c.checkpoint_every_steps = steps
  if arg == 'sparse_reg':
    p.schedule, p.begin_step = 'one_shot', steps // 2
    p.l1, p.group_lasso = 1e-5, 1e-4
  elif arg == 'smoke':
    c.num_train_steps = 4
    p.end_step, p.frequency = 2, 1
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: sparse_reg, '
                     'smoke')
  return c
