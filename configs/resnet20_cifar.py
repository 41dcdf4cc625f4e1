"""ResNet-20 (He et al. 2016) on CIFAR-10: the strong teacher for distillation.
The paper reports 91.25% after 164 epochs (lr 0.1, steps at 82/123 epochs).

Command:
  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/resnet20_cifar.py --workdir runs/resnet20_cifar
':smoke' runs 3 steps. Recipe: pad-4 random crop + flip, momentum 0.9
(Nesterov), lr 0.1 with warm-up and cosine decay, L2 5e-4, 120.0 epochs.
Expected (measured): 88.33% test precision@1 after 120 epochs; ~10 min on an
H100 shared with other runs (docs/results.md). Below the paper's 91.25%.
"""
from jaxcnn.config_base import (base_config, set_cifar_sgd_recipe,
                                set_cifar_standard_input, set_smoke)


def get_config(arg=None):
  c = base_config()
  c.model.name = 'resnet20_cifar'
  c.model.shortcut = 'A'           # parameter-free zero-padded identity
  # CPU: conv inputs kept in memory, not recomputed inside the filter
  # gradients' transposes (jaxcnn/ops/fusion.py); same values, ~1.3x faster.
  c.model.cpu_materialize = True
  set_cifar_standard_input(c)
  set_cifar_sgd_recipe(c, learning_rate=0.1, num_epochs=120.0, weight_decay=5e-4)
  if arg == 'smoke':
    set_smoke(c)
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  return c
