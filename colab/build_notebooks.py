"""Writes the five notebooks of colab/ from their cell sources in
colab/cells/ (one module per notebook) and the shared cells below.

  python colab/build_notebooks.py      # after editing a cell

The notebooks are committed without outputs; tests/test_notebooks.py runs
them headless in smoke mode (JAXCNN_NOTEBOOK_SMOKE=1).
"""
from __future__ import annotations

import os
import sys

import nbformat
from nbformat import v4

REPO = 'jaxcnn/jaxcnn'
HERE = os.path.dirname(os.path.abspath(__file__))


def badge(name: str) -> str:
  url = (f'https://colab.research.google.com/github/{REPO}/blob/main/colab/'
         f'{name}.ipynb')
  return (f'[![Open In Colab](https://colab.research.google.com/assets/'
          f'colab-badge.svg)]({url})')


PARAMS = '''\
# Parameters. SMOKE=True runs a few steps on the embedded digits (what the
# test suite does, via JAXCNN_NOTEBOOK_SMOKE=1); False trains for real.
import os, sys
SMOKE = os.environ.get('JAXCNN_NOTEBOOK_SMOKE', '0') == '1'
IN_COLAB = 'google.colab' in sys.modules
# Real data: a local directory (JAXCNN_DATA_DIR, see README "Data"); on Colab
# with none set, the library downloads the dataset through TFDS.
DATA_DIR = os.environ.get('JAXCNN_DATA_DIR') or None
WORKDIR = os.environ.get('JAXCNN_NOTEBOOK_WORKDIR', 'runs/notebooks')
print(f'SMOKE={SMOKE} IN_COLAB={IN_COLAB} DATA_DIR={DATA_DIR}')'''

INSTALL = f'''\
# On Colab: install jaxcnn (and its pinned-free dependencies) from GitHub.
if IN_COLAB:
    %pip install -q "jaxcnn @ git+https://github.com/{REPO}.git"'''

SHOW = '''\
from IPython.display import Image, display'''


def notebook(name, title, intro, cells):
  nb = v4.new_notebook()
  nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3',
                               'language': 'python'}
  nb.metadata['colab'] = {'name': f'{name}.ipynb'}
  nb.cells = [v4.new_markdown_cell(f'# {title}\n\n{badge(name)}\n\n{intro}'),
              v4.new_code_cell(PARAMS, metadata={'tags': ['parameters']}),
              v4.new_code_cell(INSTALL)]
  for c in cells:
    if c.startswith('%md\n'):
      nb.cells.append(v4.new_markdown_cell(c[4:]))
    else:
      nb.cells.append(v4.new_code_cell(c))
  for i, cell in enumerate(nb.cells):  # stable ids: rebuilds diff cleanly
    cell['id'] = f'{name}-{i:02d}'
  return nb


def main():
  sys.path.insert(0, HERE)
  import cells  # noqa: the cell sources, one module per notebook
  for name, (title, intro, body) in cells.NOTEBOOKS.items():
    nb = notebook(name, title, intro, [SHOW] + body)
    nbformat.validate(nb)
    path = os.path.join(HERE, f'{name}.ipynb')
    with open(path, 'w') as f:
      nbformat.write(nb, f)
    print('wrote', path)


if __name__ == '__main__':
  main()
