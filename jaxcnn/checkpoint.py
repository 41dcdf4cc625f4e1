"""Orbax CheckpointManager adapter: save, restore_or_init, latest step.

Orbax writes each step into a temporary directory and renames it when complete,
so a process killed mid-write leaves the previous step intact. When the latest
step still fails to load (corrupt files), we fall back to the one before it.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcnn.errors import CheckpointError


def _shapes(tree: Any) -> dict[str, tuple]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p): tuple(getattr(v, 'shape', ())) for p, v in
          flat}


def describe_mismatch(saved: Any, expected: Any) -> str:
  a, b = _shapes(saved), _shapes(expected)
  lines = []
  for k in sorted(set(a) | set(b)):
    if a.get(k) != b.get(k):
      lines.append(f'{k}: checkpoint {a.get(k, "missing")} vs model '
                   f'{b.get(k, "missing")}')
  return '; '.join(lines[:8]) + (' ...' if len(lines) > 8 else '')


class Checkpointer:
  """Thin wrapper so train/eval/predict share one way of reading a workdir."""

  def __init__(self, directory: str, max_to_keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=async_save))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any) -> None:
    try:
      self.manager.save(step, args=ocp.args.StandardSave(
          flax.serialization.to_state_dict(state)), force=True)
    except Exception as e:  # OSError, or an async write's error re-raised
      raise CheckpointError(
          f'could not write checkpoint step {step} to {self.directory}: '
          f'{type(e).__name__}: {e}. '
          'Free disk space or make the workdir writable; the training state '
          'is still in memory and earlier checkpoints are untouched.') from e

  def restore(self, step: int, template: Any) -> Any:
    target = flax.serialization.to_state_dict(template)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
      restored = self.manager.restore(
          step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:
      detail = ''
      try:
        meta = self.manager.item_metadata(step)
        detail = describe_mismatch(meta, target)
      except Exception:  # metadata itself unreadable: report the first error
        pass
      where = os.path.join(self.directory, str(step))
      if detail:
        raise CheckpointError(
            f'checkpoint {where} does not match this model/config: '
            f'{detail}') from e
      raise CheckpointError(f'cannot read checkpoint {where}: '
                            f'{type(e).__name__}: {str(e)[:300]}') from e
    return flax.serialization.from_state_dict(template, restored)

  def restore_latest(self, template: Any) -> tuple[Any, int | None]:
    """Newest readable step; falls back past corrupt ones, never past a
    shape mismatch (that is a user error, not damage)."""
    errors = []
    for step in reversed(self.all_steps()):
      try:
        return self.restore(step, template), step
      except CheckpointError as e:
        if 'does not match' in str(e):
          raise
        logging.warning('%s; trying an earlier step', e)
        errors.append(str(e))
    if errors:
      raise CheckpointError('no readable checkpoint in '
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
    self.wait()
    self.manager.close()


def restore_or_init(ckpt: Checkpointer, template: Any) -> tuple[Any, int]:
  state, step = ckpt.restore_latest(template)
  if step is not None:
    logging.info('resumed from %s at step %d', ckpt.directory, step)
  return state, int(np.asarray(jax.device_get(state.step)))


def load_latest(directory: str, template: Any) -> tuple[Any, int | None,
                                                         list[int]]:
  """(state, step, all steps) of the newest readable checkpoint; read-only."""
  ckpt = Checkpointer(directory, async_save=False)
  try:
    state, step = ckpt.restore_latest(template)
    return state, step, ckpt.all_steps()
  finally:
    ckpt.close()
