"""Entry point: python -m jaxcnn.main --config configs/x.py[:arg] --workdir DIR.

--mode=train (default) trains and evaluates, resuming from the workdir;
--mode=eval watches the workdir and evaluates each new checkpoint;
--mode=eval_once evaluates the latest checkpoint once.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, optionally with :arg.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'eval_once'],
                          'What to do with the workdir.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  # Imported late so --help and flag errors don't pay for JAX/TF start-up.
  from jaxcnn import evaluate, train
  from jaxcnn.errors import JaxcnnError
  try:
    if _MODE.value == 'train':
      train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    else:
      evaluate.run(_CONFIG.value, _WORKDIR.value,
                   once=_MODE.value == 'eval_once')
  except JaxcnnError as e:
    print(f'error: {e}', file=sys.stderr, flush=True)
    sys.exit(getattr(e, 'exit_code', 2))


if __name__ == '__main__':
  logging.set_verbosity(logging.WARNING)
  app.run(main)
