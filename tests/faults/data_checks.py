"""Shared by the bad-data fault tests: load a dataset from a folder with
downloads off, and assert the one-line refusal a wrong file must give."""
import pytest

from jaxcnn.data import sources
from jaxcnn.errors import DataFormatError


def load(tmp_path, name='mnist', **kw):
  return sources.load(name, data_dir=str(tmp_path), allow_download=False, **kw)


def refused(tmp_path, where, match, name='mnist', **kw):
  """Asserts a one-line DataFormatError that starts at `where` (file and
  field), matches `match` and gives a fix."""
  with pytest.raises(DataFormatError) as e:
    load(tmp_path, name, **kw)
  msg = str(e.value)
  assert '\n' not in msg and 'Traceback' not in msg
  assert msg.startswith(str(where)), msg
  assert 'Fix: ' in msg, msg
  assert e.match(match)
  return msg
