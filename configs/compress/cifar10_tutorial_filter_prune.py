"""Filter-level pruning of the TF tutorial net: half of conv1's and conv2's
filters (lowest L1 norm) removed, the next layer's inputs with them; LRN
keeps its original channel windows (jaxcnn/compress/structured.py).

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_filter_prune.py \
      --workdir runs/compress_cifar10_tutorial_filter_prune_cfg
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'cifar10_tutorial', 'filter_prune', 'fast')
  c.compress.filter_prune.include = '^(conv1|conv2)$'
  c.compress.filter_prune.ratio = 0.5
  c.compress.filter_prune.norm = 'l1'
  c.num_train_steps = 780          # 2 epochs
  c.optim.learning_rate = 0.005
  c.optim.warmup_epochs = 0.0
  c.eval_every_steps = c.checkpoint_every_steps = c.num_train_steps
  if arg == 'smoke':
    c.num_train_steps = 4
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  return c
