"""User-facing errors: the entry points print these as one line on stderr,
with no traceback, and exit with the class's `exit_code`:

  2  bad config, data, checkpoint or input (fix what the message names)
  3  stopped by SIGTERM/SIGINT after saving a checkpoint (rerun to resume)
  4  training diverged (NaN/Inf); the last good checkpoint is named
  5  the workdir is unusable, in use by another trainer, or holds a
     different run
"""


class JaxcnnError(Exception):
  """Base class for errors caused by the user's input, config or files."""
  exit_code = 2


def one_line(e: BaseException) -> str:
  """The message as one line (error output is one line per error)."""
  return ' '.join(str(e).split())


class ConfigError(JaxcnnError, ValueError):
  """The config is invalid; raised before any compilation or data loading."""


class DataNotFoundError(JaxcnnError, FileNotFoundError):
  """No data source could provide the dataset."""


class DataFormatError(JaxcnnError, ValueError):
  """A local data file exists but cannot be read or holds invalid values."""


class CheckpointError(JaxcnnError, RuntimeError):
  """A checkpoint is missing, corrupt, or does not match the model."""


class CheckpointGone(CheckpointError):
  """A step that was listed a moment ago was deleted before it could be read
  (a live trainer's keep policy removes its oldest step at any moment); a
  reader moves on to a newer step."""


class NonFiniteError(JaxcnnError, FloatingPointError):
  """Loss, gradients or the training state became NaN/Inf."""
  exit_code = 4


class WorkdirError(JaxcnnError, OSError):
  """The run directory is unusable, in use by another trainer, or holds a
  different run."""
  exit_code = 5
