"""Entry point: python -m jaxcnn.main --config configs/x.py[:arg] --workdir DIR.

--mode=train (default) trains and evaluates, resuming from the workdir;
--mode=eval watches the workdir and evaluates each new checkpoint;
--mode=eval_once evaluates the latest checkpoint once.
eval and eval_once take the config from WORKDIR/config.json: --config is
optional there, and if given it must agree with the workdir's.
"""
from __future__ import annotations

import os
import sys

# TensorFlow only writes TensorBoard files (and reads TFDS) here. Its oneDNN
# kernels print "oneDNN custom operations are on" at import, twice, through
# absl before absl is initialised (TF_CPP_MIN_LOG_LEVEL no longer filters
# that); jaxcnn runs no TF compute, so they are switched off.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

from absl import app, flags, logging
from ml_collections import config_flags

from jaxcnn import compile_cache, hostmem

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, optionally with :arg.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'eval_once'],
                          'What to do with the workdir.')
_POLL = flags.DEFINE_float('eval_poll_seconds', 10.0,
                           '--mode=eval: seconds between looks for new '
                           'checkpoints.', lower_bound=0.01)
_TIMEOUT = flags.DEFINE_float('eval_timeout_seconds', 0.0,
                              '--mode=eval: stop after this long without a '
                              'new checkpoint (0: no limit).', lower_bound=0.0)
flags.mark_flags_as_required(['workdir'])


def _last_line(e: BaseException) -> str:
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  return (lines[-1] if lines else type(e).__name__).strip("'\"")


def parse_flags(argv):
  """absl flag parsing, with config-file and override errors made readable:
  one paragraph and exit code 2, never a traceback."""
  try:
    argv = flags.FLAGS(argv)
    if _CONFIG.value is not None:  # config files load lazily: errors now
      _CONFIG.value.keys()
    return argv
  except flags.Error as e:
    first, last = str(e).splitlines()[0], _last_line(e)
    print(f'error: {first}' + ('' if last in first else f' {last}'),
          file=sys.stderr)
  except Exception as e:  # config file raised, or an override hit a bad key
    msg = _last_line(e).replace('\\n', ' ').replace("\\'", "'")
    print(f'error: bad --config file or --config.* override: {msg}. '
          'Override keys must exist in the config (jaxcnn/config_base.py '
          'lists them all).', file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  # Imported late so --help and flag errors don't pay for JAX/TF start-up.
  from jaxcnn import runs
  from jaxcnn.errors import JaxcnnError, one_line
  try:
    if _MODE.value == 'train':
      if _CONFIG.value is None:
        raise app.UsageError('--mode=train needs --config')
      runs.train(_CONFIG.value, _WORKDIR.value)
    else:
      runs.evaluate(_WORKDIR.value, _CONFIG.value,
                    once=_MODE.value == 'eval_once',
                    poll_seconds=_POLL.value,
                    timeout_seconds=_TIMEOUT.value)
  except JaxcnnError as e:
    print(f'error: {one_line(e)}', file=sys.stderr, flush=True)
    sys.exit(e.exit_code)
  except OSError as e:  # the filesystem refused a write/read (disk full, ...)
    where = f'{e.filename}: ' if e.filename else ''
    print(f'error: {where}{e.strerror or one_line(e)}; free space or fix '
          'permissions, then rerun the same command to resume',
          file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == '__main__':
  hostmem.keep_freed_memory()  # before any thread allocates (hostmem.py)
  compile_cache.enable()  # reruns and resumes skip XLA compiles
  logging.set_verbosity(logging.WARNING)
  app.run(main, flags_parser=parse_flags)
