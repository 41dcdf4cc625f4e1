"""alexnet_cifar without LRN: the speed/accuracy comparison of the tutorial.

Command:
  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/alexnet_cifar_nolrn.py --workdir runs/alexnet_nolrn
Identical to configs/alexnet_cifar.py:nolrn. ':smoke' runs 3 steps.
"""
from jaxcnn.config_base import load_sibling, set_smoke


def get_config(arg=None):
  if arg not in (None, 'smoke'):
    raise ValueError(f'unknown config argument {arg!r}; valid: smoke')
  c = load_sibling(__file__, 'alexnet_cifar', 'nolrn')
  if arg == 'smoke':
    set_smoke(c)
  return c
