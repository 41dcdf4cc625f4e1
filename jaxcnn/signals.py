"""Stopping training cleanly on SIGTERM/SIGINT: the loop polls a flag at
step boundaries, saves a checkpoint and raises Interrupted (exit code 3)."""
from __future__ import annotations

import signal

from jaxcnn.errors import JaxcnnError

# Exit code when SIGTERM/SIGINT stopped training after a final checkpoint.
EXIT_INTERRUPTED = 3


class Interrupted(JaxcnnError):
  """Training stopped by a signal after saving a checkpoint."""
  exit_code = EXIT_INTERRUPTED


class SignalFlag:
  """Records SIGTERM/SIGINT so the loop can stop at a step boundary."""

  def __init__(self):
    self.signum = None
    self._old = {}

  def __enter__(self):
    for s in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[s] = signal.signal(s, self._handle)
      except ValueError:  # not the main thread (e.g. a notebook worker)
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.signum = signum

  def __exit__(self, *exc):
    for s, h in self._old.items():
      signal.signal(s, h)
