"""Product quantization of the TF tutorial net's local3/local4: sub-vectors
of 8 inputs, 16 codewords per sub-space, then a short codeword fine-tune.
`:qcnn` fits the codewords to the layers' output error on calibration
batches instead (Wu et al.), at exactly the same bits.

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_pq.py \
      --workdir runs/a1_pq_cifar10_tutorial_cfg
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'cifar10_tutorial', 'pq')
  p = c.compress.pq
  p.include, p.sub_dim, p.bits, p.grad = '^(local3|local4)/kernel$', 8, 4, \
      'mean'
  c.num_train_steps = 97           # 1/4 epoch
  c.optim.learning_rate = 0.01     # 0.1 x the dense run's
  c.optim.schedule = 'cosine'
  c.optim.warmup_epochs = 0.0
  c.eval_every_steps = c.checkpoint_every_steps = c.num_train_steps
  if arg == 'qcnn':
    c.compress.method = 'qcnn'
    p.calib_batches = 32           # 4,096 images: full-rank X^T X for local3
  elif arg == 'smoke':
    c.num_train_steps = 4
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: qcnn, smoke')
  return c
