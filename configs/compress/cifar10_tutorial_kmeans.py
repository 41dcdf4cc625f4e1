"""k-means weight sharing of the TF tutorial net (runs/cifar10_tutorial):
4-bit conv / 5-bit FC codebooks, then 1/2 epoch of codebook fine-tuning
with the summed centroid gradient (Han et al.). A local3 centroid sums
~27k weights' gradients, so the lr is 1e-4 x the dense run's: at 1e-2 x
the run diverged (docs/quantization.md).

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_kmeans.py \
      --workdir runs/a1_kmeans_cifar10_tutorial_cfg
Same run as `python -m jaxcnn.compress --workdir runs/cifar10_tutorial
--method kmeans --epochs 0.5 --lr_scale 0.0001 --set kmeans.grad=sum`.
"""
from jaxcnn.config_base import compress_base


def get_config(arg=None):
  c = compress_base(__file__, 'cifar10_tutorial', 'kmeans')
  k = c.compress.kmeans
  k.bits_conv, k.bits_fc, k.init, k.grad = 4, 5, 'linear', 'sum'
  c.num_train_steps = 195          # 1/2 epoch
  c.optim.learning_rate = 1e-5     # 1e-4 x the dense run's
  c.optim.schedule = 'cosine'
  c.optim.warmup_epochs = 0.0
  c.eval_every_steps = c.checkpoint_every_steps = c.num_train_steps
  if arg == 'smoke':
    c.num_train_steps = 4
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  return c
