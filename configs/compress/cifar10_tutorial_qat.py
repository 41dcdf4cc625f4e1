"""Quantization-aware fine-tuning of the TF tutorial net with 4-bit weights
(fake quantization, straight-through estimator), exported and measured
like int8 PTQ through the integer path.

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_qat.py \
      --workdir runs/a1_qat4_cifar10_tutorial_cfg
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'cifar10_tutorial', 'qat')
  c.compress.int8.weight_bits = 4
  c.num_train_steps = 97           # 1/4 epoch
  c.optim.learning_rate = 0.01     # 0.1 x the dense run's
  c.optim.schedule = 'cosine'
  c.optim.warmup_epochs = 0.0
  c.eval_every_steps = c.checkpoint_every_steps = c.num_train_steps
  if arg == 'smoke':
    c.num_train_steps = 4
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  return c
