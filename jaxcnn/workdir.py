"""The run directory: its lock, its config.json, and its metrics log.

    WORKDIR/
      config.json            the run's config (written atomically)
      config.<step>.json     the previous config, when a resume changed it
      train.lock             held (flock) by the one trainer of this workdir
      checkpoints/           orbax steps (jaxcnn/checkpoint.py)
      checkpoints.quarantine/ damaged or superseded steps, moved, not deleted
      metrics.jsonl          one JSON object per log/eval step

Only this module reads or writes config.json and the lock.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
from typing import Any

import ml_collections

from jaxcnn import checkpoint, config_base
from jaxcnn.errors import CheckpointError, ConfigError, WorkdirError

CONFIG_FILE = 'config.json'
LOCK_FILE = 'train.lock'

# Fields that change nothing about the training trajectory: they may differ
# freely on resume. Anything else must be listed in config.resume_override.
_NEUTRAL = ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
            'summary_every_steps', 'keep_checkpoints', 'write_summaries',
            'end_plots', 'data_dir', 'cache_dir', 'tfds_data_dir',
            'dataset.allow_download', 'eval_batch_size', 'xla_cpu_conv',
            'distributed', 'resume_override', 'init_from', 'weights')


def prepare(workdir: str) -> str:
  """Creates `workdir` if needed; WorkdirError if it cannot be a run dir."""
  if not workdir or not workdir.strip():
    raise WorkdirError('--workdir is empty: give a directory path')
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise WorkdirError(f'workdir {path} exists and is not a directory; '
                       'choose another --workdir')
  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, f'.write_probe.{os.getpid()}')
    with open(probe, 'w'):
      pass
    os.remove(probe)
  except OSError as e:
    why = ('the path is too long' if e.errno == errno.ENAMETOOLONG else
           e.strerror or type(e).__name__)
    raise WorkdirError(f'workdir {path} is not writable: {why}; choose a '
                       'writable --workdir') from None
  for name in ('checkpoints', CONFIG_FILE, 'metrics.jsonl'):
    entry = os.path.join(path, name)
    want_dir = name == 'checkpoints'
    if os.path.lexists(entry) and os.path.isdir(entry) != want_dir:
      raise WorkdirError(f'{entry} should be a {"directory" if want_dir else "file"}'
                         ' but is not; move it away or choose another '
                         '--workdir')
  return path


class Lock:
  """Exclusive trainer lock on a workdir: an flock on WORKDIR/train.lock.

  The kernel drops an flock when its process dies, however it dies, so a
  lock left by a killed trainer never blocks the next run; the file's text
  (host, PID, start) only names the holder in the refusal message. Readers
  (eval, predict, compress reading a run) don't take it.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd = None

  def acquire(self) -> 'Lock':
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      holder = os.read(fd, 4096).decode(errors='replace').strip()
      os.close(fd)
      raise WorkdirError(
          f'workdir {os.path.dirname(self.path)} is in use by another '
          f'trainer ({holder or "holder unknown"}); wait for it, stop it, or '
          'choose another --workdir') from None
    info = (f'host {socket.gethostname()}, PID {os.getpid()}, started '
            f'{datetime.datetime.now().isoformat(timespec="seconds")}')
    os.ftruncate(fd, 0)
    os.write(fd, info.encode())
    os.fsync(fd)
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()


def is_locked(workdir: str) -> bool:
  """True while a trainer holds `workdir` (for the eval watcher)."""
  path = os.path.join(workdir, LOCK_FILE)
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return False
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False
  except OSError:
    return True
  finally:
    os.close(fd)


def _atomic_write(path: str, text: str) -> None:
  tmp = f'{path}.tmp.{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_config(config, workdir: str) -> None:
  _atomic_write(os.path.join(workdir, CONFIG_FILE),
                config.to_json_best_effort(indent=2))


def read_config_dict(workdir: str) -> dict | None:
  """The saved config as a dict; None if there is none; WorkdirError if
  the file is unreadable (it is only ever replaced atomically, so that
  means outside damage)."""
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path) as f:
      saved = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise WorkdirError(f'cannot read {path}: {e}; restore it or move it '
                       'away') from None
  if not isinstance(saved, dict):
    raise WorkdirError(f'{path} does not hold a config object')
  return saved


def _merge(node, saved: dict) -> None:
  """Saved values over the declared defaults; keys the schema no longer has
  are dropped, new fields keep their defaults (older workdirs stay usable)."""
  for k, v in saved.items():
    if isinstance(v, dict) and k in node and hasattr(node[k], 'keys'):
      _merge(node[k], v)
    elif k in node:
      node[k] = tuple(v) if isinstance(v, list) else v


def _model_section(saved) -> ml_collections.ConfigDict:
  """config.model as saved: 'name' plus the model's field overrides (keys
  base_config lacks, e.g. an MLP's `hidden`)."""
  if not isinstance(saved, dict) or not isinstance(saved.get('name'), str):
    raise ValueError(f'model must be a dict with a name, got {saved!r}')
  return ml_collections.ConfigDict(
      {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})


def read_config(workdir: str) -> ml_collections.ConfigDict | None:
  """The run's config: config_base.base_config() updated with config.json,
  so every field exists and has its declared type. None if the workdir has
  no config.json; WorkdirError if it is damaged or does not fit."""
  saved = read_config_dict(workdir)
  if saved is None:
    return None
  saved = dict(saved)
  try:
    c = config_base.base_config()
    model = saved.pop('model', {'name': c.model.name})
    _merge(c, saved)
    c.model = _model_section(model)
  except (ValueError, TypeError, KeyError) as e:  # a field's type
    raise WorkdirError(f'{os.path.join(workdir, CONFIG_FILE)} does not hold '
                       f'a usable jaxcnn config: {e}') from None
  return c


def require_config(workdir: str, flag: str = '--workdir'
                   ) -> ml_collections.ConfigDict:
  """read_config, with a ConfigError when there is no config.json."""
  c = read_config(workdir)
  if c is None:
    raise ConfigError(f'{flag} {workdir} has no {CONFIG_FILE}: not a '
                      'jaxcnn training workdir')
  return c


def choose_weights(setting: str, has_ema: bool, where: str = '') -> str:
  """'ema' or 'params' for a weights setting ('auto': EMA when kept).
  Never decided by test-set accuracy."""
  if setting not in ('auto', 'params', 'ema'):
    raise ConfigError(f'weights must be auto, params or ema, got {setting!r}')
  if setting == 'ema' and not has_ema:
    raise CheckpointError(f'weights=ema but {where or "this run"} kept no '
                          'EMA weights')
  return 'ema' if setting == 'ema' or (setting == 'auto' and has_ema) else \
      'params'


def load_weights(workdir: str, weights: str = 'auto') -> dict:
  """{'params', 'batch_stats', 'step', 'weights'} of a workdir's newest
  intact checkpoint, read without a template (any optimizer), verified."""
  ckdir = os.path.abspath(os.path.join(workdir, 'checkpoints'))
  raw, step, _ = checkpoint.load_latest(ckdir, None)
  if step is None:
    raise CheckpointError(f'no checkpoint in {ckdir}')
  use = choose_weights(weights, bool(raw.get('ema_params')), workdir)
  return {'params': raw['ema_params'] if use == 'ema' else raw['params'],
          'batch_stats': raw.get('batch_stats') or {}, 'step': step,
          'weights': use}


def _flatten(d: dict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def _norm(v: Any) -> Any:
  return [_norm(x) for x in v] if isinstance(v, (list, tuple)) else v


def config_changes(saved: dict, config) -> list[tuple[str, Any, Any]]:
  """(field, saved, new) for every field that differs. A field the saved
  file lacks (declared after the run was made) agrees when `config` holds
  its default, so older workdirs resume and reopen."""
  new = _flatten(json.loads(config.to_json_best_effort()))
  old = _flatten(saved)
  default = _flatten(json.loads(
      config_base.base_config().to_json_best_effort()))
  return [(k, old.get(k, '<absent>'), new.get(k, '<absent>'))
          for k in sorted(set(old) | set(new))
          if _norm(old.get(k)) != _norm(new.get(k)) and not (
              k not in old and k in default and
              _norm(default[k]) == _norm(new.get(k)))]


def _covered(field: str, patterns: list[str]) -> bool:
  return any(p == '*' or field == p or field.startswith(p + '.')
             for p in patterns)


def is_neutral(field: str) -> bool:
  """True for fields that change nothing about a run's trajectory."""
  return _covered(field, list(_NEUTRAL))


def _neutral_change(field: str, old, new) -> bool:
  """The convolution library is neutral (summation order only) unless the
  change enters or leaves its bf16 arithmetic."""
  if field == 'xla_cpu_conv' and 'onednn_bf16' in (old, new):
    return False
  return is_neutral(field)


def check_resume(workdir: str, config, step: int) -> None:
  """Refuses to continue a run under a config that changes its trajectory.

  Neutral fields (logging, eval, paths) may differ. Others must be named in
  `config.resume_override` (comma-separated fields or sections, or '*');
  the previous config.json is then kept as config.<step>.json.
  """
  saved = read_config_dict(workdir)
  if saved is None:
    return
  changes = config_changes(saved, config)
  allowed = [p.strip() for p in config.resume_override.split(',') if p.strip()]
  blocked = [c for c in changes if not _neutral_change(*c) and
             not _covered(c[0], allowed)]
  if blocked:
    listing = '; '.join(f'{k}: {a!r} -> {b!r}' for k, a, b in blocked[:8])
    raise WorkdirError(
        f'workdir {workdir} holds a run at step {step} with a different '
        f'config ({listing}). Use a new --workdir, or pass '
        f'--config.resume_override={",".join(k for k, _, _ in blocked)} '
        'to continue this run with the new values')
  if changes:
    _atomic_write(os.path.join(workdir, f'config.{step}.json'),
                  json.dumps(saved, indent=2))
    print('resume: config changed: ' + '; '.join(
        f'{k} {a!r} -> {b!r}' for k, a, b in changes[:8]), flush=True)


def repair_jsonl(path: str) -> None:
  """Drops a partial last line left by a crash mid-write, so appending
  after it cannot glue two records together."""
  try:
    with open(path, 'rb+') as f:
      data = f.read()
      if not data or data.endswith(b'\n'):
        return
      f.truncate(data.rfind(b'\n') + 1)
  except FileNotFoundError:
    return


def read_jsonl(path: str) -> list[dict]:
  """Records of metrics.jsonl; unparseable lines (a crash mid-write) are
  skipped, and a step logged twice (work redone after a resume) keeps its
  last record."""
  records: dict[tuple, dict] = {}
  try:
    with open(path) as f:
      for line in f:
        try:
          r = json.loads(line)
        except ValueError:
          continue
        if isinstance(r, dict) and 'step' in r:
          records[(r['step'], r.get('split'))] = r
  except FileNotFoundError:
    return []
  return sorted(records.values(), key=lambda r: r['step'])
