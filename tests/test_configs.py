"""Every config loads, validates, and its :smoke variant trains real steps.

Data is a tiny synthetic <name>.npz in a temp dir (the local-npz source), so
this needs no download and no real dataset.
"""
import glob
import os

import numpy as np
import pytest

from jaxcnn import experiment, train

from jaxcnn import runs
from jaxcnn.config_base import load_sibling
from jaxcnn.data import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.splitext(os.path.basename(p))[0] for p in
                 glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                 if not os.path.basename(p).startswith('_'))


def _load(name, arg=None):
  return load_sibling(os.path.join(ROOT, 'configs', 'x.py'), name, arg)


def _fake_dataset(dirname, name, n_train=40, n_test=12):
  info = datasets.get_info(name)
  rng = np.random.default_rng(0)
  np.savez(os.path.join(dirname, f'{name}.npz'),
           x_train=rng.integers(0, 256, (n_train, *info.image_shape), np.uint8),
           y_train=np.arange(n_train) % info.num_classes,
           x_test=rng.integers(0, 256, (n_test, *info.image_shape), np.uint8),
           y_test=np.arange(n_test) % info.num_classes)


def test_every_config_is_listed():
  assert {'quickstart', 'lenet5_mnist', 'cifar10_tutorial',
          'alexnet_cifar'} <= set(CONFIGS)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_validates_with_docstring_command(name):
  c = _load(name)
  experiment.validate(c)
  doc = open(os.path.join(ROOT, 'configs', name + '.py')).read()
  assert f'--config configs/{name}.py' in doc  # the exact command is given
  with pytest.raises(ValueError, match='unknown config argument'):
    _load(name, 'no-such-variant')


@pytest.mark.parametrize('name', CONFIGS)
def test_smoke_variant_trains(name, tmp_path):
  c = _load(name, 'smoke')
  if c.dataset.name != 'digits':
    _fake_dataset(str(tmp_path), c.dataset.name)
    c.data_dir = str(tmp_path)
    c.batch_size = min(c.batch_size, 16)
  c.eval_batch_size = 12
  results = runs.train(c, str(tmp_path / 'run'))
  assert np.isfinite(results['params']['loss'])
