"""MobileNetV2 with a CIFAR stem: the lightweight backbone of the compression
survey (inverted residuals, linear bottlenecks, depthwise convolutions).

Command:
  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/mobilenet_v2_cifar.py --workdir runs/mobilenet_v2_cifar
':smoke' runs 3 steps. Recipe: pad-4 random crop + flip, momentum 0.9
(Nesterov), lr 0.05 with warm-up and cosine decay, L2 5e-4, 60.0 epochs.
Expected (measured): 90.23% test precision@1 after 60 epochs; ~6-7 min on an
H100 shared with other runs (docs/results.md).
"""
from jaxcnn.config_base import (base_config, set_cifar_sgd_recipe,
                                set_cifar_standard_input, set_smoke)


def get_config(arg=None):
  c = base_config()
  c.model.name = 'mobilenet_v2_cifar'
  c.model.width_multiplier = 1.0   # channel width factor
  set_cifar_standard_input(c)
  set_cifar_sgd_recipe(c, learning_rate=0.05, num_epochs=60.0, weight_decay=5e-4)
  if arg == 'smoke':
    set_smoke(c)
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  return c
