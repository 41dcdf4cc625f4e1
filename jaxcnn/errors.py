"""User-facing errors: main.py prints these as one paragraph, with no traceback."""


class JaxcnnError(Exception):
  """Base class for errors caused by the user's input, config or files."""


class ConfigError(JaxcnnError, ValueError):
  """The config is invalid; raised before any compilation or data loading."""


class DataNotFoundError(JaxcnnError, FileNotFoundError):
  """No data source could provide the dataset."""


class DataFormatError(JaxcnnError, ValueError):
  """A local data file exists but cannot be read or holds invalid values."""


class CheckpointError(JaxcnnError, RuntimeError):
  """A checkpoint is missing, corrupt, or does not match the model."""
