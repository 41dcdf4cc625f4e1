"""Deep Compression (Han et al. 2016) of the trained LeNet-5
(runs/lenet5_mnist, 99.15%): 1. global magnitude pruning to 92.5% of the
kernels, gradual, 15 epochs of fine-tuning with EMA; 2. k-means weight
sharing (4-bit conv, 5-bit fc codebooks per kernel) + 1 epoch of codebook
fine-tuning; 3. Huffman coding of the indices and the sparse positions.

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/lenet5_mnist_deep_compression.py \
      --workdir runs/b_dc_lenet5_mnist
Stage workdirs 1_prune/ and 2_kmeans/ sit inside the workdir; the same
command resumes. Results: docs/distillation_deep_compression.md.
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'lenet5_mnist', 'deep_compression')
  prune_steps = 7020               # 15 epochs at 468 steps/epoch
  p = c.compress.prune
  p.scope, p.sparsity, p.schedule = 'global', 0.925, 'gradual'
  p.end_step, p.frequency = int(0.6 * prune_steps), prune_steps // 25
  k = c.compress.kmeans
  k.bits_conv, k.bits_fc, k.init = 4, 5, 'linear'
  dc = c.compress.deep_compression
  dc.prune_steps, dc.quantize_steps = prune_steps, 468
  dc.quantize_lr_scale = 0.01      # stage 2: lr 5e-4, cosine to 0
  c.optim.learning_rate = 0.05     # stage 1: the dense run's lr, cosine to 0
  c.ema_decay = 0.999
  c.checkpoint_every_steps = 1000
  if arg == 'smoke':
    dc.prune_steps, dc.quantize_steps = 4, 2
    p.end_step, p.frequency = 2, 1
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  return c
