"""BNN (Courbariaux, Hubara et al. 2016) LeNet-5 on MNIST: binary weights
and activations in C3, C5 and F6, float C1 and output layer
(jaxcnn/models/binary.py). Trained from scratch with the 'binary' compress
method, which clips the latent weights to [-1, 1] after every update and
writes the bit-packed artifact and report at the end (docs/binary.md).

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/bnn_mnist.py --workdir runs/binary_bnn_mnist
Variants: ':small' 16/32/128 + 128 for 5 epochs; ':mlp' the paper's MLP
shape (3 x 1024, first/last float); ':a2' 2-bit activations; ':smoke' a
few steps.
"""
import ml_collections

from jaxcnn.config_base import base_config


def get_config(arg=None):
  c = base_config()
  c.model.name = 'bnn_lenet5'
  # Model field overrides (BNNLeNet5): C1, C3, C5 widths and F6 (binary
  # nets need more channels than LeNet-5's 6/16/120/84).
  c.model.features = (32, 64, 256)
  c.model.hidden = 256
  c.dataset.name = 'mnist'
  c.input.pad = 2                  # 28x28 -> 32x32
  c.input.normalize = 'mean_std'
  c.input.mean = (33.318,)
  c.input.std = (78.567,)
  c.batch_size = 100
  c.eval_batch_size = 1000
  c.num_epochs = 15.0
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.schedule = 'cosine'
  c.compress.method = 'binary'     # clipping + bit-packed artifact
  c.compress.binary.include = '^(C3|C5|F6)/kernel$'
  c.log_every_steps = 200
  c.eval_every_steps = 3000        # every 5 epochs at 600 steps/epoch
  c.checkpoint_every_steps = 3000
  if arg == 'small':
    # 1/4 of the MACs, 5 epochs: measured 97.63% on a GPU (docs/binary.md).
    c.model.features = (16, 32, 128)
    c.model.hidden = 128
    c.num_epochs = 5.0
  elif arg == 'mlp':
    c.model = ml_collections.ConfigDict({'name': 'bnn_mlp'})
    c.compress.binary.include = '^fc[2-9]/kernel$'
  elif arg == 'a2':
    c.model.act_bits = 2           # a model field override (BNNLeNet5)
  elif arg == 'smoke':
    # Plain training of the BNN model: the test suite smoke-trains every
    # config, and the artifact/report step is tested in
    # tests/test_compress_binary.py instead.
    c.compress.method = ''
    c.model.features = (4, 8, 16)
    c.model.hidden = 16
    c.num_train_steps = 5
    c.batch_size = 32
    c.log_every_steps = 1
    c.eval_every_steps = 5
    c.checkpoint_every_steps = 5
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; valid: small, mlp, "
                     "a2, smoke")
  return c
