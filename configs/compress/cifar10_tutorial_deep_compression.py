"""Deep Compression (Han et al. 2016) of the TF tutorial net
(runs/cifar10_tutorial, 82.92% EMA): 1. global magnitude pruning to 85% of
the kernels, gradual over 60% of 30 epochs of fine-tuning (momentum 0.9,
cosine from 0.01, EMA; in a 4+2-step CPU smoke run the global threshold at
90% left the convs nearly dense and kept 1.4% of local3); 2. k-means
weight sharing (4-bit conv, 5-bit fc codebooks) + 3 epochs of codebook
fine-tuning; 3. Huffman coding.

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_deep_compression.py \
      --workdir runs/b_dc_cifar10_tutorial
Sized for a GPU (a few minutes on an H100); ':short' is a 2 + 1 epoch CPU
version. ':s80' / ':s85': 80% / 85% sparsity with 5 epochs of codebook
fine-tuning at lr 1e-3 with each centroid moved by the mean of its weights'
gradients (the first GPU run, 90% and 3 epochs at 5e-4 with Han et al.'s
sum, lost 2.2% to pruning and 1.1% more to quantization; the sum at 1e-3
diverged to chance: ~5k surviving local3 weights share each centroid, so
the summed step is thousands of times larger). ':s80c5': ':s80' with
5-bit conv codebooks and 8 epochs of codebook fine-tuning (stage 1 is the
same as ':s80', so a copy of its 1_prune dir is reused). Results: docs/distillation_deep_compression.md.
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'cifar10_tutorial', 'deep_compression')
  epochs, q_epochs, sparsity, q_lr, q_grad = 30, 3, 0.85, 0.05, 'sum'
  bits_conv = 4
  if arg in ('s80', 's85'):
    q_epochs, sparsity, q_lr, q_grad = 5, int(arg[1:]) / 100, 0.1, 'mean'
  elif arg == 's80c5':
    q_epochs, sparsity, q_lr, q_grad, bits_conv = 8, 0.8, 0.1, 'mean', 5
  elif arg == 'short':
    epochs, q_epochs = 2, 1
  elif arg == 'smoke':
    epochs, q_epochs = 0, 0
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: s80, s85, '
                     's80c5, short, smoke')
  prune_steps = max(4, epochs * 390)
  p = c.compress.prune
  p.scope, p.sparsity, p.schedule = 'global', sparsity, 'gradual'
  p.end_step, p.frequency = int(0.6 * prune_steps), max(1, prune_steps // 25)
  k = c.compress.kmeans
  k.bits_conv, k.bits_fc, k.init, k.grad = bits_conv, 5, 'linear', q_grad
  dc = c.compress.deep_compression
  dc.prune_steps, dc.quantize_steps = prune_steps, max(2, q_epochs * 390)
  dc.quantize_lr_scale = q_lr      # stage 2: lr 5e-4 (s80/s85: 1e-3)
  c.optim.learning_rate = 0.01
  c.optim.momentum = 0.9
  c.optim.schedule = 'cosine'
  c.optim.warmup_epochs = 0.0
  c.ema_decay = 0.999
  c.checkpoint_every_steps = 1950
  return c
