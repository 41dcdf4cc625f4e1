"""k-means weight sharing of the trained LeNet-5 (Deep Compression stage 2):
4-bit codebooks for the conv kernels, 5-bit for the FC ones, linear init,
1 epoch of codebook fine-tuning. `:pruned` starts from the pruned net
(runs/compress_lenet5_mnist_prune) instead: the codebooks cover the
survivors only and the zeros stay zero.

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/lenet5_mnist_kmeans.py \
      --workdir runs/a1_kmeans_lenet5_mnist_cfg
Same run as `python -m jaxcnn.compress --workdir runs/lenet5_mnist
--method kmeans --epochs 1 --lr_scale 0.01` (docs/quantization.md).
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'lenet5_mnist', 'kmeans', run=(
      'compress_lenet5_mnist_prune' if arg == 'pruned' else ''))
  k = c.compress.kmeans
  k.bits_conv, k.bits_fc, k.init, k.grad = 4, 5, 'linear', 'sum'
  c.num_train_steps = 468          # 1 epoch
  c.optim.learning_rate = 0.0005   # 0.01 x the dense run's: the sum over a
  c.optim.schedule = 'cosine'      # codebook entry's weights is large
  c.optim.warmup_epochs = 0.0
  c.eval_every_steps = c.checkpoint_every_steps = c.num_train_steps
  if arg == 'smoke':
    c.num_train_steps = 4
  elif arg and arg != 'pruned':
    raise ValueError(f'unknown config argument {arg!r}; valid: pruned, smoke')
  return c
