"""Where jaxcnn keeps what it can rebuild: decoded datasets, the oneDNN
handlers it compiles, XLA's compiled programs. One root for all of them,
`$JAXCNN_CACHE_DIR` or `~/.cache/jaxcnn`, so one variable moves (or one
`rm -rf` clears) every cache."""
from __future__ import annotations

import os

ENV_CACHE_DIR = 'JAXCNN_CACHE_DIR'


def cache_root() -> str:
  return os.environ.get(ENV_CACHE_DIR) or os.path.join(
      os.path.expanduser('~'), '.cache', 'jaxcnn')
