"""k-means weight sharing of the TF tutorial net (runs/cifar10_tutorial):
4-bit conv / 5-bit FC codebooks, then a short codebook fine-tune. The
centroid gradient is the MEAN of its weights' gradients here: with ~27k
local3 weights per centroid the sum (Han et al.) diverged at lr 1e-3
(docs/quantization.md).

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/compress/cifar10_tutorial_kmeans.py \
      --workdir runs/a1_kmeans_cifar10_tutorial_cfg
"""
import os

from jaxcnn.config_base import load_sibling

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def get_config(arg=None):
  c = load_sibling(os.path.join(_ROOT, 'configs', 'x.py'), 'cifar10_tutorial')
  c.init_from = os.path.join(_ROOT, 'runs', 'cifar10_tutorial')
  c.compress.method = 'kmeans'
  k = c.compress.kmeans
  k.bits_conv, k.bits_fc, k.init, k.grad = 4, 5, 'linear', 'mean'
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
