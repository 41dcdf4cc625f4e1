"""Shared fixtures. Tests build their own tiny inputs; the real datasets in
$JAXCNN_DATA_DIR are used only by the tests marked as integration tests."""
import os

# Hide GPUs from TF before anything imports it; keep XLA's CPU threads modest.
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Many tests (and their subprocesses, which inherit this) compile the same
# small train steps; a session-wide persistent cache compiles each once.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  import tempfile
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(
      prefix='jaxcnn-test-xla-cache-')
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '-1'

# A test's CPU goes to compiling tiny programs, not running them, so XLA's
# slow backend passes are off (measured: the mobilenet smoke test 80 -> 62 s
# wall). Subprocesses that must run at default flags set XLA_FLAGS
# themselves (adding FAST_COMPILE_FLAGS where speed of compiling is all that
# matters); JAXCNN_TEST_XLA_DEFAULTS=1 keeps the defaults everywhere.
FAST_COMPILE_FLAGS = ('' if os.environ.get('JAXCNN_TEST_XLA_DEFAULTS') == '1'
                      else '--xla_backend_optimization_level=0 '
                      '--xla_llvm_disable_expensive_passes=true')
if FAST_COMPILE_FLAGS not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' +
                             FAST_COMPILE_FLAGS).strip()

import pytest  # noqa: E402


def real_data_dir():
  d = os.environ.get('JAXCNN_DATA_DIR')
  return d if d and os.path.isdir(d) else None


@pytest.fixture
def tiny_config():
  """LeNet-5 on embedded digits, a handful of steps: the fastest real run."""
  from configs import quickstart
  c = quickstart.get_config()
  c.num_train_steps = 6
  c.batch_size = 32
  c.eval_batch_size = 120
  c.log_every_steps = 2
  c.eval_every_steps = 6
  c.checkpoint_every_steps = 3
  c.end_plots = False  # the quickstart's PNGs cost seconds per run
  return c


@pytest.fixture(scope='module')
def digits():
  """scikit-learn's embedded 8x8 digits (Splits), loaded once per module."""
  from jaxcnn.data import sources
  return sources.load('digits')
