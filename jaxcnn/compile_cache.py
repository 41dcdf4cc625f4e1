"""XLA's persistent compilation cache for the CLI entry points.

A rerun, a resume after preemption, `--mode=eval_once`, `predict` and
`compress` of the same config compile the same programs again. JAX can keep
compiled executables on disk, keyed by the program, the compile options,
the backend and the jax/jaxlib versions, so a changed program never reuses
a stale one. Measured on the 2-core dev CPU, alexnet_cifar, 2 train steps
and the final evaluation: 24.5 s cold, 19.2 s with the cache warm (the
first step 4.4 -> 1.4 s); the cache held 440 KB.

`enable()` points JAX at `$JAXCNN_CACHE_DIR/xla` (default
`~/.cache/jaxcnn/xla`) unless the user already chose a directory
(`JAX_COMPILATION_CACHE_DIR`, which JAX reads itself) or opted out with
`JAXCNN_COMPILE_CACHE=off`. Only the entry points' `__main__` call it:
importing jaxcnn as a library changes no global JAX setting.
"""
from __future__ import annotations

import os

import jax

from jaxcnn import paths

ENV_OPT_OUT = 'JAXCNN_COMPILE_CACHE'


def default_dir() -> str:
  return os.path.join(paths.cache_root(), 'xla')


def enable() -> str:
  """Turns the cache on for this process; returns the directory used, or
  '' when it is left to the user's setting or switched off."""
  if os.environ.get(ENV_OPT_OUT, '').lower() in ('off', '0', 'false', 'no'):
    return ''
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return ''  # JAX reads it itself
  path = default_dir()
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return ''  # read-only home: compile every time, as without the cache
  jax.config.update('jax_compilation_cache_dir', path)
  return path
