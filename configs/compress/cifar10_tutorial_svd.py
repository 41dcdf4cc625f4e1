"""Truncated SVD of the TF tutorial net's local3/local4 (Denton et al.):
each kept at <= 18% of its weights (>= 5x fewer FC parameters), then
fine-tuned. ...:conv also factorizes conv2 with the spatial/channel
separable scheme (Jaderberg et al.) at the same ratio.

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_svd.py \
      --workdir runs/compress_cifar10_tutorial_svd_cfg
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'cifar10_tutorial', 'svd', 'fast')
  c.compress.svd.include = '^(local3|local4)$'
  c.compress.svd.param_ratio = 0.18
  c.num_train_steps = 780          # 2 epochs
  c.optim.learning_rate = 0.005
  c.optim.warmup_epochs = 0.0
  c.eval_every_steps = c.checkpoint_every_steps = c.num_train_steps
  if arg == 'conv':
    c.compress.svd.conv_include = '^conv2$'
  elif arg == 'smoke':
    c.num_train_steps = 4
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: conv, smoke')
  return c
