"""LeNet-5 (ReLU, max-pool) on CIFAR-10 RGB 32x32; the PaddlePaddle tutorial
reached about 60% after 200 passes.

Command:
  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/lenet5_cifar.py --workdir runs/lenet5_cifar
':smoke' runs 3 steps. Recipe: pad-4 random crop + flip, momentum 0.9
(Nesterov), lr 0.02 with warm-up and cosine decay, L2 5e-4, 100.0 epochs.
Expected (measured): 73.65% test precision@1 after 100 epochs; 138 s on an
H100 shared with 8 other runs (docs/results.md).
"""
from jaxcnn.config_base import (base_config, set_cifar_sgd_recipe,
                                set_cifar_standard_input, set_smoke)


def get_config(arg=None):
  c = base_config()
  c.model.name = 'lenet5'
  c.model.dropout_rate = 0.0       # LeNet-5 is small enough not to need it
  set_cifar_standard_input(c)
  set_cifar_sgd_recipe(c, learning_rate=0.02, num_epochs=100.0, weight_decay=5e-4)
  if arg == 'smoke':
    set_smoke(c)
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  return c
