"""Post-training int8 of the TF tutorial net (runs/cifar10_tutorial): per-
channel weight scales, per-layer activation scales from 8 calibration
batches; accuracy of the int8 x int8 -> int32 inference path. `:int4`
quantizes the weights to 4 bits (activations stay 8-bit). PTQ trains
nothing: the single step applies a zero update.

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_int8.py \
      --workdir runs/a1_int8_cifar10_tutorial_cfg
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'cifar10_tutorial', 'int8')
  c.compress.int8.weight_bits = 8
  c.compress.int8.act_bits = 8
  c.num_train_steps = 1
  c.eval_every_steps = c.checkpoint_every_steps = c.num_train_steps
  if arg == 'int4':
    c.compress.int8.weight_bits = 4
  elif arg and arg != 'smoke':
    raise ValueError(f'unknown config argument {arg!r}; valid: int4, smoke')
  return c
