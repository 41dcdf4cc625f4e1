"""Readers beside a live trainer that deletes steps (keep_checkpoints): a
step listed a moment ago may vanish at any point of a read. Every reader
(eval_once, the --mode=eval watcher, predict's load) moves on to a step that
exists; none reports damage, quarantines, or exits on a raw OSError.

Each test deletes a step at one precise moment of a real orbax read, by
hooking the orbax call that happens there."""
import os
import shutil
import threading

import orbax.checkpoint as ocp
import pytest
from orbax.checkpoint._src.metadata import checkpoint as orbax_metadata

from jaxcnn import checkpoint, evaluate
from jaxcnn.errors import CheckpointError, CheckpointGone
from tests.faults.checkpoint_checks import state as _state, write as _write


def _reader(directory):
  return checkpoint.Checkpointer(str(directory), async_save=False)


def _delete_on_metadata_read(monkeypatch, directory, doomed):
  """Deletes step `doomed` the moment orbax reads its step metadata (the
  scan that opening or reloading a manager does)."""
  original = orbax_metadata._MetadataStoreImpl.read
  step_dir = os.path.join(str(directory), str(doomed))

  def read(self, file_path):
    if str(file_path).startswith(step_dir + os.sep):
      shutil.rmtree(step_dir, ignore_errors=True)
    return original(self, file_path)
  monkeypatch.setattr(orbax_metadata._MetadataStoreImpl, 'read', read)


def _on_array_read(monkeypatch, action):
  """Runs action(step) just before orbax reads step's arrays."""
  original = ocp.CheckpointManager.restore

  def restore(self, step, *a, **k):
    action(step)
    return original(self, step, *a, **k)
  monkeypatch.setattr(ocp.CheckpointManager, 'restore', restore)


@pytest.mark.parametrize('doomed', [1, 2, 3])
def test_a_step_vanishing_while_a_reader_opens_is_not_an_error(
    tmp_path, monkeypatch, doomed):
  _write(tmp_path, [1, 2, 3])
  _delete_on_metadata_read(monkeypatch, tmp_path, doomed)
  ck = _reader(tmp_path)  # orbax stats the step it listed: it is gone
  try:
    assert doomed not in ck.all_steps()
    state, step = ck.restore_latest(_state(0))
  finally:
    ck.close()
  expected = 2 if doomed == 3 else 3
  assert step == expected and float(state.params['w'][0, 0]) == expected
  assert not os.path.exists(str(tmp_path) + '.quarantine')


def test_the_newest_step_vanishing_during_reload_falls_to_the_next(
    tmp_path, monkeypatch):
  _write(tmp_path, [1, 2])
  ck = _reader(tmp_path)
  try:
    _write(tmp_path, [3, 4])  # the trainer moves on after the reader opened
    _delete_on_metadata_read(monkeypatch, tmp_path, 4)
    state, step = ck.restore_latest(_state(0))  # reloads: 4 vanishes there
  finally:
    ck.close()
  assert step == 3 and float(state.params['w'][0, 0]) == 3.0


@pytest.mark.parametrize('moment', ['before_metadata', 'before_arrays'])
def test_a_step_deleted_mid_restore_is_gone_not_corrupt(tmp_path, monkeypatch,
                                                        capsys, moment):
  _write(tmp_path, [1, 2, 3])
  ck = _reader(tmp_path)
  doomed = os.path.join(str(tmp_path), '3')
  if moment == 'before_metadata':
    shutil.rmtree(doomed)
  else:
    _on_array_read(monkeypatch, lambda step: shutil.rmtree(
        os.path.join(str(tmp_path), str(step)), ignore_errors=True)
        if step == 3 else None)
  try:
    with pytest.raises(CheckpointGone, match='removed by its trainer'):
      ck.restore(3, _state(0))
    state, step = ck.restore_latest(_state(0))
  finally:
    ck.close()
  assert step == 2 and float(state.params['w'][0, 0]) == 2.0
  out = capsys.readouterr().out
  assert 'corrupt' not in out and 'warning' not in out
  assert not os.path.exists(str(tmp_path) + '.quarantine')


def test_a_reader_behind_the_trainer_reads_the_step_written_meanwhile(
    tmp_path, monkeypatch):
  """While 3 is being read the trainer saves 4 and deletes 3 (keep=2):
  the reader ends on 4, which it never listed before."""
  _write(tmp_path, [2, 3], keep=2)

  def trainer_moves_on(step):
    if step == 3 and not os.path.exists(os.path.join(str(tmp_path), '4')):
      _write(tmp_path, [4], keep=2)
      assert not os.path.exists(os.path.join(str(tmp_path), '2'))
      shutil.rmtree(os.path.join(str(tmp_path), '3'))
  _on_array_read(monkeypatch, trainer_moves_on)
  state, step, steps = checkpoint.load_latest(str(tmp_path), _state(0))
  assert step == 4 and float(state.params['w'][0, 0]) == 4.0
  assert steps == [4]


def test_every_step_deleted_under_eval_once_is_a_clear_error(tmp_path,
                                                             monkeypatch):
  _write(tmp_path, [1, 2])

  def wipe(step):
    for s in (1, 2):
      shutil.rmtree(os.path.join(str(tmp_path), str(s)), ignore_errors=True)
  _on_array_read(monkeypatch, wipe)
  with pytest.raises(CheckpointError, match='no checkpoint in'):
    evaluate.evaluate_latest(str(tmp_path), _state(0), lambda s: {})


def test_the_watcher_skips_a_step_the_trainer_deleted_and_follows_on(
    tmp_path, monkeypatch, capsys):
  """The watcher lists 1-3; 3 goes while it reads it and 4 (the final step)
  appears: it notes the skip once and evaluates 4."""
  _write(tmp_path, [1, 2, 3], keep=3)

  def trainer_moves_on(step):
    if step == 3:
      shutil.rmtree(os.path.join(str(tmp_path), '3'))
      _write(tmp_path, [4], keep=3)
  _on_array_read(monkeypatch, trainer_moves_on)
  evaluated = []

  def evaluate_step(state):
    evaluated.append(float(state.params['w'][0, 0]))
    return {'params': {'precision@1': evaluated[-1]}}
  results = evaluate.watch(str(tmp_path), str(tmp_path), _state(0),
                           evaluate_step, total=4, poll_seconds=0.05,
                           timeout_seconds=30, grace_seconds=0.1)
  out = capsys.readouterr().out
  assert evaluated == [4.0] and results['params']['precision@1'] == 4.0
  assert out.count('was removed by its trainer') == 1
  assert 'skipped' in out and 'corrupt' not in out
  assert 'step 4: precision @ 1 = 4.000' in out


def test_a_step_half_deleted_when_read_is_gone_not_corrupt(tmp_path,
                                                           monkeypatch):
  """Orbax deletes a step in place: the read fails on the arrays already
  unlinked while the directory itself goes a moment later."""
  _write(tmp_path, [1, 2])
  step_dir = os.path.join(str(tmp_path), '2')

  def half_delete(step):
    if step != 2 or not os.path.isdir(step_dir):
      return
    shutil.rmtree(os.path.join(step_dir, 'default'))
    threading.Timer(0.02, shutil.rmtree, (step_dir,)).start()
  _on_array_read(monkeypatch, half_delete)
  ck = _reader(tmp_path)
  try:
    with pytest.raises(CheckpointGone):
      ck.restore(2, _state(0))
  finally:
    ck.close()
  state, step, _ = checkpoint.load_latest(str(tmp_path), _state(0))
  assert step == 1 and float(state.params['w'][0, 0]) == 1.0
