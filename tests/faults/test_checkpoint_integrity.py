"""Checkpoints are never lost and never silently wrong (issue 16, items 2, 5,
6, 7, 11): incomplete steps, truncation and bit flips in every kind of file
orbax writes, keep=0, re-saving a step, non-finite states."""
import os
import shutil

import chex
import jax
import numpy as np
import pytest

from jaxcnn import checkpoint, experiment, parallel, predict, runs
from jaxcnn.errors import CheckpointError, NonFiniteError
from tests.faults.checkpoint_checks import state as _state, write as _write


def _read(directory, writer=False):
  ck = checkpoint.Checkpointer(str(directory), async_save=False,
                               writer=writer)
  try:
    return ck.restore_latest(_state(0))
  finally:
    ck.close()


def _files(step_dir):
  return sorted(os.path.join(d, f) for d, _, fs in os.walk(step_dir)
                for f in fs)


@pytest.mark.parametrize('keep', [0, 1, -3])
def test_no_keep_setting_deletes_the_last_checkpoint(tmp_path, keep):
  _write(tmp_path, [1, 2, 3], keep=keep)
  state, step = _read(tmp_path)
  assert step == 3 and float(state.params['w'][0, 0]) == 3.0


@pytest.mark.parametrize('make', ['empty_dir', 'file', 'partial_copy',
                                  'no_metadata'])
def test_incomplete_step_never_hides_intact_ones(tmp_path, make):
  _write(tmp_path, [1, 2])
  bogus = tmp_path / '99999'
  if make == 'empty_dir':
    bogus.mkdir()
  elif make == 'file':
    bogus.write_text('x')
  elif make == 'partial_copy':  # a step dir missing its final metadata
    shutil.copytree(tmp_path / '2', bogus)
    os.remove(bogus / '_CHECKPOINT_METADATA')
  else:
    shutil.copytree(tmp_path / '2', bogus)
    os.remove(bogus / 'default' / '_METADATA')
  assert _read(tmp_path)[1] == 2  # readers skip it, change nothing
  assert bogus.exists() or bogus.is_symlink() or os.path.lexists(bogus)
  # The trainer moves it aside (kept, not deleted) and can save again.
  ck = checkpoint.Checkpointer(str(tmp_path), async_save=False, writer=True)
  assert ck.latest_step() == 2
  ck.save(3, _state(3, 3.0))
  ck.close()
  assert not os.path.lexists(bogus)
  assert any(n.startswith('99999.incomplete') for n in
             os.listdir(str(tmp_path) + '.quarantine'))
  assert _read(tmp_path)[1] == 3


def _damage(path, how):
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:
    if how == 'truncate':
      f.truncate(size // 2)
    elif how == 'empty':
      f.truncate(0)
    else:  # flip one bit in the middle
      f.seek(size // 2)
      b = f.read(1)
      f.seek(size // 2)
      f.write(bytes([b[0] ^ 0x10]))


def test_every_damaged_file_falls_back_or_loads_intact(tmp_path):
  """Each file of the latest step, truncated, emptied or bit-flipped: the
  reader gets either step 2 exactly as saved or falls back to step 1 —
  never different numbers."""
  base = tmp_path / 'base'
  _write(base, [1, 2])
  files = [os.path.relpath(f, base / '2') for f in _files(base / '2')]
  assert len(files) >= 6
  outcomes = {}
  for rel in files:
    for how in ('truncate', 'empty', 'flip'):
      d = tmp_path / f'case{len(outcomes)}'
      shutil.copytree(base, d)
      if os.path.getsize(d / '2' / rel) == 0:
        continue
      _damage(d / '2' / rel, how)
      try:
        state, step = _read(d)
      except CheckpointError:  # only acceptable if step 1 is unreadable too
        raise AssertionError(f'{how} {rel}: no fallback to step 1')
      assert step in (1, 2), (how, rel)
      chex.assert_trees_all_equal(state.params,
                                  _state(step, float(step)).params)
      outcomes[(rel, how)] = step
  # Damage to the data files that are read is detected (some orbax files
  # hold bytes a restore never reads: those load intact, checked above).
  data = [k for k in outcomes if '/d/' in k[0]]
  assert data and any(outcomes[k] == 1 for k in data)


def test_bit_flip_is_caught_by_the_checksum(tmp_path):
  _write(tmp_path, [1, 2])
  data = [f for f in _files(tmp_path / '2') if f'{os.sep}d{os.sep}' in f]
  for f in data:
    _damage(f, 'flip')
  ck = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  with pytest.raises(CheckpointError, match='corrupt|cannot read'):
    ck.restore(2, _state(0))
  ck.close()


def test_values_that_differ_from_the_recorded_digest_are_refused(tmp_path):
  """What a flipped bit inside an uncompressed chunk amounts to: orbax reads
  the file fine, the numbers are different. Simulated by recording another
  digest for one leaf."""
  import json
  _write(tmp_path, [1, 2])
  meta_path = tmp_path / '2' / '_CHECKPOINT_METADATA'
  meta = json.loads(meta_path.read_text())
  digests = meta['custom_metadata'][checkpoint.DIGEST_KEY]
  key = next(k for k in digests if "'w'" in k)
  digests[key] = '0' * 64
  meta_path.write_text(json.dumps(meta))
  ck = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  with pytest.raises(CheckpointError, match=r"checksum mismatch in \['params'\]\['w'\]"):
    ck.restore(2, _state(0))
  ck.close()
  assert _read(tmp_path)[1] == 1


def test_corrupt_latest_run_can_still_finish(tiny_config, tmp_path):
  """Fallback, redo the work, save the same step number again: no
  StepAlreadyExistsError; the damaged step is kept in quarantine."""
  runs.train(tiny_config, str(tmp_path))
  victim = max(_files(tmp_path / 'checkpoints' / '6'), key=os.path.getsize)
  _damage(victim, 'flip')
  r = runs.train(tiny_config, str(tmp_path))
  assert r['params']['count'] == 360
  assert 6 in checkpoint.Checkpointer(
      str(tmp_path / 'checkpoints'), async_save=False).all_steps()
  assert any(n.startswith('6.corrupt') for n in
             os.listdir(tmp_path / 'checkpoints.quarantine'))


def test_empty_step_dir_blocks_neither_resume_eval_nor_predict(tiny_config,
                                                               tmp_path):
  runs.train(tiny_config, str(tmp_path))
  (tmp_path / 'checkpoints' / '99999').mkdir()
  r = runs.evaluate(str(tmp_path), tiny_config, once=True)
  assert r['params']['count'] == 360
  p = predict.Predictor(str(tmp_path))
  assert p.step == 6
  tiny_config.num_train_steps = 9
  tiny_config.resume_override = 'num_train_steps'
  runs.train(tiny_config, str(tmp_path))
  assert checkpoint.Checkpointer(str(tmp_path / 'checkpoints'),
                                 async_save=False).latest_step() == 9


def test_nonfinite_state_is_never_written(tmp_path):
  ck = checkpoint.Checkpointer(str(tmp_path), async_save=False, writer=True)
  ck.save(1, _state(1))
  for bad in (np.nan, np.inf, -np.inf):
    s = _state(2)
    s.params['w'][1, 2] = bad
    with pytest.raises(NonFiniteError, match=r"\['w'\]"):
      ck.save(2, s)
  ck.close()
  assert _read(tmp_path)[1] == 1


@pytest.mark.parametrize('lr', [1e6, 1e30])
def test_divergence_never_leaves_a_bad_last_good_checkpoint(tiny_config,
                                                           tmp_path, lr):
  tiny_config.optim.learning_rate = lr
  tiny_config.checkpoint_every_steps = 1
  tiny_config.log_every_steps = 1
  tiny_config.num_train_steps = 30
  with pytest.raises(NonFiniteError, match='Last good checkpoint') as e:
    runs.train(tiny_config, str(tmp_path))
  ck = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'),
                               async_save=False)
  steps = ck.all_steps()
  ck.close()
  named = str(e.value).split('Last good checkpoint: ')[1]
  if steps:
    assert named.startswith(f'step {steps[-1]} ')
    state, _, _ = checkpoint.load_latest(
        str(tmp_path / 'checkpoints'),
        experiment.state_template(tiny_config, parallel.make_mesh()))
    assert all(np.isfinite(np.asarray(x)).all()
               for x in jax.tree.leaves(state.params))
    # Resuming from it gives a finite first step (the loss of the step
    # after a checkpoint is what proves the checkpoint good).
  else:
    assert named.startswith('none')
