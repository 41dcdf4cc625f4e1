"""jaxcnn.compile_cache: the CLI keeps XLA executables on disk, so a rerun
of the same config compiles nothing; the user's own setting and the opt-out
win; importing jaxcnn as a library changes no JAX setting."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(tmp_path, **extra):
  env = {k: v for k, v in os.environ.items()
         if k not in ('JAX_COMPILATION_CACHE_DIR', 'JAXCNN_COMPILE_CACHE')}
  env['JAXCNN_CACHE_DIR'] = str(tmp_path / 'cache')
  env.update(extra)
  return env


_PROBE = ('import sys, jax\n'
          'from jaxcnn import compile_cache\n'
          'before = jax.config.jax_compilation_cache_dir\n'
          'print(repr(before), repr(compile_cache.enable()), '
          'repr(jax.config.jax_compilation_cache_dir))\n')


@pytest.mark.parametrize('extra,want', [
    ({}, 'default'),
    ({'JAXCNN_COMPILE_CACHE': 'off'}, 'off'),
    ({'JAXCNN_COMPILE_CACHE': '0'}, 'off'),
    ({'JAX_COMPILATION_CACHE_DIR': 'USER'}, 'user'),
])
def test_enable_precedence(tmp_path, extra, want):
  user = str(tmp_path / 'mine')
  extra = {k: (user if v == 'USER' else v) for k, v in extra.items()}
  out = subprocess.run([sys.executable, '-c', _PROBE], cwd=ROOT,
                       env=_env(tmp_path, **extra), capture_output=True,
                       text=True, check=True).stdout.split()
  before, used, after = (eval(x) for x in out)  # reprs of str / None
  default = str(tmp_path / 'cache' / 'xla')
  if want == 'default':
    assert (before, used, after) == (None, default, default)
    assert os.path.isdir(default)
  elif want == 'off':
    assert (before, used, after) == (None, '', None)
    assert not os.path.exists(default)
  else:  # JAX read the user's variable itself; jaxcnn left it alone
    assert (used, after) == ('', user) and before == user


def test_library_import_changes_no_jax_setting(tmp_path):
  code = ('import jax, jaxcnn.train, jaxcnn.predict, jaxcnn.main\n'
          'print(repr(jax.config.jax_compilation_cache_dir))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                       env=_env(tmp_path), capture_output=True, text=True,
                       check=True).stdout.strip()
  assert out == 'None'
  assert not os.path.exists(tmp_path / 'cache' / 'xla')


def test_cli_rerun_hits_the_cache_and_trains_identically(tmp_path):
  """Second run of the same command: no new cache entries (every program
  found on disk), the same final metrics bit for bit."""
  cache = tmp_path / 'cache' / 'xla'
  finals = []
  for i in range(2):
    wd = tmp_path / f'run{i}'
    subprocess.run(
        [sys.executable, '-m', 'jaxcnn.main', '--config',
         'configs/quickstart.py:smoke', '--workdir', str(wd),
         '--config.xla_cpu_conv=eigen', '--config.end_plots=False'],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True,
        check=True)
    entries = sorted(os.listdir(cache))
    if i == 0:
      first = entries
      assert first, 'nothing was cached'
    else:
      assert entries == first
    with open(wd / 'final_metrics.json') as f:
      finals.append(json.load(f))
  assert finals[0] == finals[1]
