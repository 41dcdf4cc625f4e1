"""Damaged and mismatched checkpoints give clear errors or fall back."""
import os

import pytest

from jaxcnn import checkpoint, experiment, parallel, runs
from jaxcnn.errors import CheckpointError


def _template(config):
  return experiment.state_template(config, parallel.make_mesh())


def _biggest_file(folder):
  files = [os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs]
  return max(files, key=os.path.getsize)


def test_corrupt_latest_checkpoint_falls_back_to_previous(tiny_config,
                                                          tmp_path):
  runs.train(tiny_config, str(tmp_path))
  victim = _biggest_file(tmp_path / 'checkpoints' / '6')
  with open(victim, 'r+b') as f:  # truncate the largest data file
    f.truncate(max(os.path.getsize(victim) // 3, 1))
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'),
                                 async_save=False)
  state, step = ckpt.restore_latest(_template(tiny_config))
  ckpt.close()
  assert step == 3 and int(state.step) == 3


def test_checkpoint_of_another_model_is_explained(tiny_config, tmp_path):
  runs.train(tiny_config, str(tmp_path))
  tiny_config.model.name = 'lenet5_classic'
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'),
                                 async_save=False)
  with pytest.raises(CheckpointError, match='does not match') as e:
    ckpt.restore_latest(_template(tiny_config))
  ckpt.close()
  assert 'checkpoint' in str(e.value) and 'model' in str(e.value)


def _failing_save(monkeypatch, fail_steps):
  import orbax.checkpoint as ocp
  real = ocp.CheckpointManager.save

  def save(self, step, *a, **kw):
    if step in fail_steps:
      raise OSError(28, 'No space left on device')
    return real(self, step, *a, **kw)
  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)


def test_full_disk_mid_run_warns_and_training_continues(tiny_config, tmp_path,
                                                        monkeypatch, capsys):
  _failing_save(monkeypatch, {3})
  runs.train(tiny_config, str(tmp_path))
  err = capsys.readouterr().err
  assert 'No space left on device' in err and 'Training continues' in err
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['6']


def test_full_disk_at_the_end_is_a_clear_error(tiny_config, tmp_path,
                                               monkeypatch):
  _failing_save(monkeypatch, {3, 6})
  with pytest.raises(CheckpointError, match='could not write checkpoint step 6'
                     '.*No space left.*still in memory'):
    runs.train(tiny_config, str(tmp_path))


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
  import numpy as np
  from PIL import Image
  from jaxcnn import predict
  path = tmp_path / 'big.png'
  Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
  monkeypatch.setattr(predict, 'MAX_PIXELS', 1000)
  with pytest.raises(predict.ImageError, match='too large'):
    predict.read_image(str(path), (32, 32), 3)
  with pytest.raises(predict.ImageError, match='is a directory'):
    predict.read_image(str(tmp_path), (32, 32), 3)
