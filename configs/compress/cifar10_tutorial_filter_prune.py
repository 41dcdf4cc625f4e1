"""Filter-level pruning of the TF tutorial net: half of conv1's and conv2's
filters (lowest L1 norm) removed, the next layer's inputs with them; LRN
keeps its original channel windows (jaxcnn/compress/structured.py).

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_filter_prune.py \
      --workdir runs/compress_cifar10_tutorial_filter_prune_cfg
"""
import os

from jaxcnn.config_base import load_sibling

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def get_config(arg=None):
  c = load_sibling(os.path.join(_ROOT, 'configs', 'x.py'), 'cifar10_tutorial',
                   'fast')
  c.init_from = os.path.join(_ROOT, 'runs', 'cifar10_tutorial_fast')
  c.compress.method = 'filter_prune'
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
