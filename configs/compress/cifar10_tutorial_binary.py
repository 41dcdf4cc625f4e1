"""Binary weights on the TF tutorial net (runs/cifar10_tutorial, 82.9% EMA):
conv2, local3 and local4 binarised, conv1 and softmax_linear kept float.
Argument: 'bwn' (default: alpha * sign(w), alpha = mean|W| per filter),
'xnor' (BWN weights and binarised layer inputs), 'xnor_a2' (2-bit inputs),
'bc' (BinaryConnect: sign(w), no scale), 'bc_stoch' (stochastic
BinaryConnect); ':smoke' a few steps. The same runs through the CLI:

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_binary.py:xnor \
      --workdir runs/binary_cifar10_tutorial_xnor
  python -m jaxcnn.compress --workdir runs/cifar10_tutorial --method xnor \
      --output OUT --epochs 30 --set optim.momentum=0.9
"""
from jaxcnn.config_base import compress_base

_METHODS = {'bwn': 'bwn', 'xnor': 'xnor', 'xnor_a2': 'xnor', 'bc': 'binary',
            'bc_stoch': 'binary'}


def get_config(arg=None):
  variant = arg or 'bwn'
  if variant == 'smoke':
    variant = 'bwn'
  if variant not in _METHODS:
    raise ValueError(f'unknown config argument {arg!r}; valid: '
                     f'{", ".join(_METHODS)}, smoke')
  c = compress_base(__file__, 'cifar10_tutorial', _METHODS[variant])
  c.compress.binary.include = '^(conv2|local3|local4)/kernel$'
  c.compress.binary.stochastic = variant == 'bc_stoch'
  c.compress.binary.act_bits = 2 if variant == 'xnor_a2' else 1
  c.num_train_steps = 390 * 30     # 30 epochs of fine-tuning
  c.optim.learning_rate = 0.01
  c.optim.momentum = 0.9
  c.optim.schedule = 'cosine'
  c.eval_every_steps = c.checkpoint_every_steps = 390 * 10
  if arg == 'smoke':
    c.num_train_steps = 4
  return c
