"""Orbax CheckpointManager adapter: save, verified restore with fallback.

Guarantees (tests/faults/):
- Orbax writes each step into a temporary directory and renames it when
  complete, so a process killed mid-write leaves the previous step intact.
- Every save records a SHA-256 of each leaf's bytes in the step's orbax
  metadata; restore recomputes them, so a flipped bit or a truncated chunk
  is caught instead of silently evaluating garbage.
- An incomplete, corrupt or unverifiable step never hides the intact steps
  before it: readers skip it; the trainer (`writer=True`, which holds the
  workdir lock) moves it to `<dir>.quarantine/` (nothing is deleted) so the
  rerun can write that step again.
- A step deleted under a reader (a live trainer keeps only the newest
  `keep`) is CheckpointGone, never damage: readers re-list and move on, and
  opening or reloading the step list retries when a step vanishes mid-scan.
- A state with NaN/Inf is never written, and `keep` is at least 1: no
  setting deletes the last complete checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcnn.errors import CheckpointError, CheckpointGone, NonFiniteError

DIGEST_KEY = 'jaxcnn_sha256'      # custom metadata: {leaf path: sha256 hex}
_NOT_VERIFIED = 'not-addressable'  # multi-host sharded leaf: no local digest
# Files orbax writes last; a step directory without them is incomplete.
_COMPLETE_MARKERS = ('_CHECKPOINT_METADATA', os.path.join('default',
                                                          '_METADATA'))
_LIST_TRIES = 8  # orbax's step scan, retried when a step vanishes during it


def _flat(tree: Any) -> list[tuple[str, Any]]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [(jax.tree_util.keystr(p), v) for p, v in flat]


def describe_mismatch(saved: Any, expected: Any) -> str:
  a = {k: tuple(getattr(v, 'shape', ())) for k, v in _flat(saved)}
  b = {k: tuple(getattr(v, 'shape', ())) for k, v in _flat(expected)}
  lines = [f'{k}: checkpoint {a.get(k, "missing")} vs model '
           f'{b.get(k, "missing")}'
           for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
  return '; '.join(lines[:8]) + (' ...' if len(lines) > 8 else '')


def host_leaves(tree: Any) -> list[tuple[str, np.ndarray | None]]:
  """(path, host array) per leaf; None for arrays this process cannot see
  whole (multi-host model sharding), which are left unverified."""
  flat = _flat(tree)
  local = [v if not isinstance(v, jax.Array) or v.is_fully_addressable
           else None for _, v in flat]
  host = jax.device_get(local)  # one batched transfer
  return [(k, None if h is None else np.asarray(h))
          for (k, _), h in zip(flat, host)]


def digests(leaves: list[tuple[str, np.ndarray | None]]) -> dict[str, str]:
  out = {}
  for k, a in leaves:
    if a is None:
      out[k] = _NOT_VERIFIED
      continue
    h = hashlib.sha256(f'{a.dtype.str}{a.shape}'.encode())
    h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)
    out[k] = h.hexdigest()
  return out


def nonfinite_leaves(leaves: list[tuple[str, np.ndarray | None]]) -> list[str]:
  return [k for k, a in leaves if a is not None and
          np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all()]


def is_complete(step_dir: str) -> bool:
  return os.path.isdir(step_dir) and all(
      os.path.isfile(os.path.join(step_dir, m)) for m in _COMPLETE_MARKERS)


def complete_steps(directory: str) -> list[int]:
  """Complete steps on disk now (a live trainer may have added some)."""
  return [s for s in _step_names(directory)
          if is_complete(os.path.join(directory, str(s)))]


def _step_names(directory: str) -> list[int]:
  try:
    names = os.listdir(directory)
  except FileNotFoundError:
    return []
  return sorted(int(n) for n in names if n.isdigit())


def _retry_vanished(fn, directory: str):
  """fn() (an orbax step scan), again when a step directory vanished during
  it: orbax stats every step it lists, and a live trainer may delete its
  oldest step between the listing and the stat."""
  for attempt in range(_LIST_TRIES):
    try:
      return fn()
    except FileNotFoundError as e:
      missing = str(e.filename or '')
      if not missing.startswith(directory + os.sep):
        raise  # not a step under this directory: a real error
      time.sleep(0.02 * (attempt + 1))
  raise CheckpointError(f'the checkpoints in {directory} kept disappearing '
                        f'while being listed ({_LIST_TRIES} tries); is '
                        'something deleting them?')


def _removed(where: str, wait_s: float = 0.25) -> bool:
  """Whether step directory `where` is gone, or goes within `wait_s`:
  orbax deletes a step in place, file by file, so a read can fail on a
  step whose directory still exists for a few more milliseconds."""
  deadline = time.monotonic() + wait_s
  while os.path.isdir(where):
    if time.monotonic() > deadline:
      return False
    time.sleep(0.02)
  return True


def _gone(where: str) -> CheckpointGone:
  return CheckpointGone(f'checkpoint {where} was removed by its trainer '
                        '(keep_checkpoints, or a quarantine) before it could '
                        'be read')


class Checkpointer:
  """One way of reading and writing a workdir's checkpoints.

  `writer=True` only for the process that owns the run (train, holding the
  lock): it may quarantine bad steps. Readers (eval, predict, compress
  reading a trained run) never change the directory.
  """

  def __init__(self, directory: str, keep: int = 3, async_save: bool = True,
               writer: bool = False):
    self.directory = os.path.abspath(directory)
    self.quarantine_dir = self.directory + '.quarantine'
    # Orbax needs the same options on every process; only process 0 moves
    # files (quarantine).
    self.writer = writer
    self._owner = writer and jax.process_index() == 0
    if self._owner:
      os.makedirs(self.directory, exist_ok=True)
      for step in _step_names(self.directory):
        if not is_complete(os.path.join(self.directory, str(step))):
          self.quarantine(step, 'incomplete')
    self._async = async_save
    self.manager = self._open(max(1, int(keep)))

  def _open(self, keep: int):
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.LatestN(keep),
        create=self.writer, read_only=not self.writer,
        enable_async_checkpointing=self._async and self.writer)
    return _retry_vanished(
        lambda: ocp.CheckpointManager(self.directory, options=options),
        self.directory)

  def reload(self) -> None:
    """Re-reads the step list (steps a live trainer wrote or deleted)."""
    _retry_vanished(self.manager.reload, self.directory)

  def quarantine(self, step: int, reason: str) -> str | None:
    """Moves step `step` aside (never deletes it); writer only."""
    src = os.path.join(self.directory, str(step))
    if not self._owner or not os.path.lexists(src):
      return None
    os.makedirs(self.quarantine_dir, exist_ok=True)
    dst = os.path.join(self.quarantine_dir,
                       f'{step}.{reason}.{time.strftime("%Y%m%d-%H%M%S")}')
    shutil.move(src, dst)
    print(f'warning: checkpoint step {step} is {reason}; moved to {dst}',
          flush=True)
    if hasattr(self, 'manager'):
      self.reload()
    return dst

  def all_steps(self) -> list[int]:
    return complete_steps(self.directory)

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, extra: dict | None = None) -> None:
    """Writes `state` as step `step`; raises NonFiniteError (nothing
    written) if any float leaf is NaN/Inf. `extra`: JSON-able metadata kept
    with the step (e.g. a streaming data iterator's state)."""
    tree = flax.serialization.to_state_dict(state)
    leaves = host_leaves(tree)
    bad = nonfinite_leaves(leaves)
    if bad:
      raise NonFiniteError(
          f'the state at step {step} has NaN/Inf in {", ".join(bad[:4])}; '
          'not written as a checkpoint')
    if step in self.manager.all_steps():  # e.g. left by an abandoned run
      self.wait()
      self.quarantine(step, 'superseded')
    try:
      self.manager.save(step, args=ocp.args.StandardSave(tree), force=True,
                        custom_metadata={**(extra or {}),
                                         DIGEST_KEY: digests(leaves)})
    except Exception as e:  # OSError, or an async write's error re-raised
      raise CheckpointError(
          f'could not write checkpoint step {step} to {self.directory}: '
          f'{type(e).__name__}: {e}. '
          'Free disk space or make the workdir writable; the training state '
          'is still in memory and earlier checkpoints are untouched.') from e

  def custom_metadata(self, step: int) -> dict:
    """The JSON-able metadata saved with `step` (digests and `extra`)."""
    return dict(self._metadata(step).custom_metadata or {})

  def _metadata(self, step: int):
    """Orbax's step metadata; CheckpointError if its file is damaged (orbax
    itself would only warn and carry on without the recorded digests)."""
    path = os.path.join(self.directory, str(step), _COMPLETE_MARKERS[0])
    try:
      with open(path) as f:
        json.load(f)
      return self.manager.metadata(step)
    except Exception as e:  # unreadable JSON, missing file
      if _removed(os.path.dirname(path)):
        raise _gone(os.path.dirname(path)) from e
      raise CheckpointError(
          f'cannot read checkpoint {self.directory}/{step}: metadata '
          f'unreadable ({type(e).__name__}: {str(e)[:200]})') from e

  def restore(self, step: int, template: Any = None) -> Any:
    """Step `step` into `template`'s structure (None: as saved, numpy
    leaves), verified against the digests recorded at save."""
    where = os.path.join(self.directory, str(step))
    meta = self._metadata(step)
    target = (None if template is None else
              flax.serialization.to_state_dict(template))
    tree_meta = getattr(meta.item_metadata, 'tree', meta.item_metadata)
    if target is not None and tree_meta is not None:
      detail = describe_mismatch(tree_meta, target)
      if detail:
        raise CheckpointError(f'checkpoint {where} does not match this '
                              f'model/config: {detail}')
    abstract = (None if target is None else
                jax.tree.map(ocp.utils.to_shape_dtype_struct, target))
    try:
      restored = self.manager.restore(
          step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:
      if _removed(where):
        raise _gone(where) from e
      raise CheckpointError(f'cannot read checkpoint {where}: '
                            f'{type(e).__name__}: {str(e)[:300]}') from e
    _verify(where, (meta.custom_metadata or {}).get(DIGEST_KEY), restored)
    if template is None:
      return jax.tree.map(np.asarray, restored)
    return flax.serialization.from_state_dict(template, restored)

  def restore_latest(self, template: Any = None) -> tuple[Any, int | None]:
    """Newest intact step, falling back past damaged ones; never past a
    shape mismatch (that is a user error, not damage). A step deleted while
    it was being read sends it back to the current listing. Without a
    step: (template, None)."""
    errors, tried = [], set()
    self.reload()  # steps a live trainer wrote since we opened
    while True:
      left = [s for s in self.all_steps() if s not in tried]
      if not left:
        break
      step = left[-1]
      tried.add(step)
      try:
        return self.restore(step, template), step
      except CheckpointGone as e:
        logging.info('%s; reading the newest step on disk instead', e)
        self.reload()
      except CheckpointError as e:
        if 'does not match' in str(e):
          raise
        logging.warning('%s; trying an earlier step', e)
        print(f'warning: {e}; trying an earlier step', flush=True)
        errors.append(str(e))
        self.quarantine(step, 'corrupt')
    if errors:
      raise CheckpointError('no intact checkpoint in '
                            f'{self.directory}: ' + ' | '.join(errors))
    return template, None

  def wait(self) -> None:
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # the background write of the last save failed
      raise CheckpointError(f'finishing a checkpoint write in '
                            f'{self.directory} failed: {type(e).__name__}: '
                            f'{e}') from e

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self.manager.close()


def _verify(where: str, expected: dict | None, restored: Any) -> None:
  if expected is None:
    logging.warning('%s was written before integrity checks: not verified',
                    where)
    return
  got = digests(host_leaves(restored))
  bad = [k for k, v in got.items()
         if v != _NOT_VERIFIED and expected.get(k) not in (v, _NOT_VERIFIED)]
  if bad:
    raise CheckpointError(f'checkpoint {where} is corrupt: checksum mismatch '
                          f'in {", ".join(bad[:4])}'
                          + (' ...' if len(bad) > 4 else ''))


def restore_or_init(ckpt: Checkpointer, template: Any) -> tuple[Any, int]:
  state, step = ckpt.restore_latest(template)
  if step is not None:
    logging.info('resumed from %s at step %d', ckpt.directory, step)
  return state, int(np.asarray(jax.device_get(state.step)))


def load_latest(directory: str, template: Any) -> tuple[Any, int | None,
                                                         list[int]]:
  """(state, step, all steps) of the newest intact checkpoint; read-only."""
  if not os.path.isdir(directory):
    return template, None, []
  ckpt = Checkpointer(directory, async_save=False)
  try:
    state, step = ckpt.restore_latest(template)
    return state, step, ckpt.all_steps()
  finally:
    ckpt.close()
