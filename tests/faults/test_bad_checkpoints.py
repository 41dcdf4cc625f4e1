"""Damaged and mismatched checkpoints give clear errors or fall back."""
import os

import pytest

from jaxcnn import checkpoint, experiment, parallel, train
from jaxcnn.errors import CheckpointError


def _template(config):
  model = experiment.build_model(config)
  tx, _ = experiment.make_optimizer(config, model, experiment.Plan(1, 1))
  return experiment.init_state(config, model, tx, parallel.make_mesh())


def _biggest_file(folder):
  files = [os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs]
  return max(files, key=os.path.getsize)


def test_corrupt_latest_checkpoint_falls_back_to_previous(tiny_config,
                                                          tmp_path):
  train.train_and_evaluate(tiny_config, str(tmp_path))
  victim = _biggest_file(tmp_path / 'checkpoints' / '6')
  with open(victim, 'r+b') as f:  # truncate the largest data file
    f.truncate(max(os.path.getsize(victim) // 3, 1))
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'),
                                 async_save=False)
  state, step = ckpt.restore_latest(_template(tiny_config))
  ckpt.close()
  assert step == 3 and int(state.step) == 3


def test_checkpoint_of_another_model_is_explained(tiny_config, tmp_path):
  train.train_and_evaluate(tiny_config, str(tmp_path))
  tiny_config.model.name = 'lenet5_classic'
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'),
                                 async_save=False)
  with pytest.raises(CheckpointError, match='does not match') as e:
    ckpt.restore_latest(_template(tiny_config))
  ckpt.close()
  assert 'checkpoint' in str(e.value) and 'model' in str(e.value)
