"""Dataset registry: name -> image shape, classes and the TFDS name behind it.

Streaming entries (imagenet2012, imagefolder) are read by data/streaming.py.

`data/` knows nothing about models; models learn shapes from here via the config.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str
  image_shape: tuple[int, int, int]  # H, W, C of the stored uint8 images
  class_names: tuple[str, ...]
  tfds_name: str | None  # None: not available through TFDS
  num_train: int
  num_test: int
  # Read by data/streaming.py (grain), not held as arrays: image_shape is
  # then the default dataset.image_size (streaming.dataset_info has the
  # config's), and imagefolder's classes come from its folders.
  streaming: bool = False
  eval_split: str = 'test'  # the TFDS split evaluated

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


_DIGITS = tuple(str(i) for i in range(10))

DATASETS: dict[str, DatasetInfo] = {
    'cifar10': DatasetInfo(
        'cifar10', (32, 32, 3),
        ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
         'horse', 'ship', 'truck'), 'cifar10', 50000, 10000),
    'mnist': DatasetInfo('mnist', (28, 28, 1), _DIGITS, 'mnist', 60000, 10000),
    'fashion_mnist': DatasetInfo(
        'fashion_mnist', (28, 28, 1),
        ('t-shirt/top', 'trouser', 'pullover', 'dress', 'coat', 'sandal',
         'shirt', 'sneaker', 'bag', 'ankle boot'), 'fashion_mnist', 60000,
        10000),
    'svhn_cropped': DatasetInfo('svhn_cropped', (32, 32, 3), _DIGITS,
                                'svhn_cropped', 73257, 26032),
    # scikit-learn's bundled 8x8 digits (UCI optdigits test set): always
    # available offline. Split deterministically 1437 train / 360 test.
    'digits': DatasetInfo('digits', (8, 8, 1), _DIGITS, None, 1437, 360),
    # ILSVRC-2012 as TFDS prepares it from the manually downloaded tars
    # (docs/data.md); class names as TFDS numbers them (synset order).
    'imagenet2012': DatasetInfo(
        'imagenet2012', (256, 256, 3), tuple(f'class_{i}' for i in range(1000)),
        'imagenet2012', 1281167, 50000, streaming=True,
        eval_split='validation'),
    # ROOT/train/<class>/*, ROOT/val/<class>/* (config.dataset.root).
    'imagefolder': DatasetInfo('imagefolder', (256, 256, 3), (), None, 0, 0,
                               streaming=True),
}


def get_info(name: str) -> DatasetInfo:
  if name not in DATASETS:
    raise ValueError(f'unknown dataset {name!r}; valid names: '
                     f'{", ".join(sorted(DATASETS))}')
  return DATASETS[name]
