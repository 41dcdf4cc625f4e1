"""The small two-block CNN baseline that the AlexNet tutorial compares against.

Command:
  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/simple_cnn_cifar.py --workdir runs/simple_cnn_cifar
':smoke' runs 3 steps. Recipe: pad-4 random crop + flip, momentum 0.9
(Nesterov), lr 0.02 with warm-up and cosine decay, L2 5e-4, 100.0 epochs.
Expected (measured): 82.35% test precision@1 after 100 epochs; 154 s on an
H100 shared with 8 other runs (docs/results.md).
"""
from jaxcnn.config_base import (base_config, set_cifar_sgd_recipe,
                                set_cifar_standard_input, set_smoke)


def get_config(arg=None):
  c = base_config()
  c.model.name = 'simple_cnn'
  c.model.dropout_rate = 0.0       # on the hidden fc layer only
  set_cifar_standard_input(c)
  set_cifar_sgd_recipe(c, learning_rate=0.02, num_epochs=100.0, weight_decay=5e-4)
  if arg == 'smoke':
    set_smoke(c)
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  return c
