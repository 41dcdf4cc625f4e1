"""Executes every colab/ notebook headless (nbclient) in smoke mode.

The five run as parallel subprocesses, each with its own kernel; smoke mode
(JAXCNN_NOTEBOOK_SMOKE=1) trains a few steps on the embedded digits, and
XLA's slow optimisation passes are off (tests/conftest.py: compile time,
not run time, is what a 3-step run spends).
"""
import concurrent.futures
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLAB = os.path.join(ROOT, 'colab')
NOTEBOOKS = ('quickstart', 'alexnet_lrn', 'cifar10_tutorial', 'multi_device',
             'compression')

_RUN = '''
import sys, nbformat
from nbclient import NotebookClient
src, dst, cwd = sys.argv[1:]
nb = nbformat.read(src, as_version=4)
try:
    NotebookClient(nb, timeout=300, kernel_name='python3',
                   resources={'metadata': {'path': cwd}}).execute()
finally:
    nbformat.write(nb, dst)
'''


def _texts(nb) -> str:
  out = []
  for cell in nb['cells']:
    for o in cell.get('outputs', []):
      out.append(o.get('text', '') if isinstance(o.get('text', ''), str)
                 else ''.join(o['text']))
      if 'data' in o and 'text/plain' in o['data']:
        out.append(''.join(o['data']['text/plain']))
  return '\n'.join(out)


@pytest.fixture(scope='module')
def executed(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('notebooks')
  env = dict(os.environ)
  # A compilation cache that outlives the session: the kernels' compiles
  # are identical from run to run (measured: ~25% less CPU when warm).
  env['JAX_COMPILATION_CACHE_DIR'] = os.environ.get(
      'JAXCNN_NOTEBOOK_XLA_CACHE',
      os.path.expanduser('~/.cache/jaxcnn/xla-notebook-tests'))
  env.update(JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1')
  env.update(JAXCNN_NOTEBOOK_SMOKE='1', JAX_PLATFORMS='cpu',
             PYTHONPATH=ROOT + os.pathsep + env.get('PYTHONPATH', ''))

  def run(name):
    e = dict(env, JAXCNN_NOTEBOOK_WORKDIR=str(tmp / name))
    dst = tmp / f'{name}.ipynb'
    p = subprocess.run([sys.executable, '-c', _RUN,
                        os.path.join(COLAB, f'{name}.ipynb'), str(dst), ROOT],
                       env=e, cwd=ROOT, capture_output=True, text=True)
    return name, p, dst

  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    results = list(pool.map(run, NOTEBOOKS))
  out = {}
  for name, p, dst in results:
    assert p.returncode == 0, f'{name}.ipynb failed:\n{p.stderr[-3000:]}'
    with open(dst) as f:
      out[name] = (json.load(f), tmp / name)
  return out


def test_notebooks_static_structure():
  for name in NOTEBOOKS:
    with open(os.path.join(COLAB, f'{name}.ipynb')) as f:
      nb = json.load(f)
    first = ''.join(nb['cells'][0]['source'])
    assert (f'https://colab.research.google.com/github/jaxcnn/jaxcnn/blob/'
            f'main/colab/{name}.ipynb') in first
    code = [''.join(c['source']) for c in nb['cells']
            if c['cell_type'] == 'code']
    assert 'SMOKE =' in code[0]
    assert code[1].startswith('#') and 'if IN_COLAB:\n    %pip install' in \
        code[1]
    assert all(not c.get('outputs') for c in nb['cells']
               if c['cell_type'] == 'code'), 'commit notebooks without outputs'
    # The library is imported, not pasted in.
    assert any('from jaxcnn' in c for c in code)


def test_notebooks_match_their_cell_sources():
  sys.path.insert(0, COLAB)
  try:
    import build_notebooks
    import cells
  finally:
    sys.path.remove(COLAB)
  for name, (title, intro, body) in cells.NOTEBOOKS.items():
    want = build_notebooks.notebook(name, title, intro,
                                    [build_notebooks.SHOW] + body)
    with open(os.path.join(COLAB, f'{name}.ipynb')) as f:
      have = json.load(f)
    assert [''.join(c['source']) for c in have['cells']] == [
        c['source'] for c in want.cells], (
            f'{name}.ipynb is stale: run python colab/build_notebooks.py')


def test_notebooks_execute_in_smoke_mode(executed):
  nb, wd = executed['quickstart']
  assert (wd / 'quickstart' / 'samples.png').exists()
  assert (wd / 'quickstart' / 'confusion_matrix.png').exists()
  nb, wd = executed['alexnet_lrn']
  text = _texts(nb)
  assert 'with LRN: precision@1' in text and 'without LRN' in text
  assert (wd / 'alexnet_lrn' / 'lrn_activations.png').exists()
  assert 'channel 4: ' in text
  nb, wd = executed['cifar10_tutorial']
  text = _texts(nb)
  assert 'ema    weights: precision@1' in text
  assert 'params weights: precision@1' in text
  assert (wd / 'cifar10_tutorial' / 'filters.png').exists()
  nb, wd = executed['multi_device']
  assert '8 devices' in _texts(nb)
  nb, wd = executed['compression']
  text = _texts(nb)
  assert 'pruning: prune:' in text, text[-3000:]
  assert (wd / 'tradeoff.png').exists()
