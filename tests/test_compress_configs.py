"""configs/compress/*.py load, validate and build their method (no data,
no compile)."""
import glob
import os

import pytest

from jaxcnn import runs
from jaxcnn.compress import base
from jaxcnn.config_base import load_sibling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'compress', '*.py')))


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize('arg', [None, 'smoke'])
def test_compress_config_validates(path, arg):
  name = os.path.splitext(os.path.basename(path))[0]
  c = load_sibling(path, name, arg)
  runs.validate(c)
  assert c.init_from.startswith(os.path.join(ROOT, 'runs'))
  assert base.get_method(c.compress).name == c.compress.method


def test_defaults_leave_training_alone():
  from jaxcnn.config_base import base_config
  c = base_config()
  assert c.compress.method == '' and c.init_from == ''
  assert base.get_method(c.compress) is None


@pytest.mark.parametrize('field, value, message', [
    ('method', 'prunee', "unknown compress.method 'prunee'; valid: "),
    ('prune.include', 'conv9', "compress.prune.include='conv9' matches no "
     "layer of 'lenet5'; layers are: C1, C3, C5, F6, output"),
    ('prune.include', 'conv[', 'compress.prune.include is not a valid regex'),
])
def test_bad_compress_section_fails_validation(tiny_config, field, value,
                                               message):
  import jaxcnn.errors
  c = tiny_config
  c.compress.method = 'prune'
  node, *rest = field.split('.')
  if rest:
    c.compress[node][rest[0]] = value
  else:
    c.compress[node] = value
  with pytest.raises(jaxcnn.errors.ConfigError) as e:
    runs.validate(c)
  assert message in str(e.value)
