"""The design's boundaries, read from the import graph (../shared/
ARCHITECTURE.md): the core imports nothing from jaxcnn.compress, models and
ops import no training code, data/ knows no models, and no modules import
each other in a cycle. Imports inside functions count."""
import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'jaxcnn')

CORE = ('jaxcnn.train', 'jaxcnn.steps', 'jaxcnn.experiment',
        'jaxcnn.evaluate', 'jaxcnn.state', 'jaxcnn.optim', 'jaxcnn.losses',
        'jaxcnn.parallel', 'jaxcnn.checkpoint', 'jaxcnn.plugins',
        'jaxcnn.workdir', 'jaxcnn.summaries')
CORE_PACKAGES = ('jaxcnn.models', 'jaxcnn.ops', 'jaxcnn.data')
TRAINING = ('jaxcnn.train', 'jaxcnn.steps', 'jaxcnn.experiment',
            'jaxcnn.evaluate', 'jaxcnn.optim', 'jaxcnn.checkpoint',
            'jaxcnn.compress', 'jaxcnn.runs', 'jaxcnn.reopen')


def _modules(root=ROOT) -> dict[str, str]:
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      if f.endswith('.py'):
        path = os.path.join(d, f)
        rel = os.path.relpath(path, os.path.dirname(root))[:-3]
        name = rel.replace(os.sep, '.')
        out[name[:-len('.__init__')] if name.endswith('.__init__')
            else name] = path
  return out


def _targets(module: str, node, modules, is_package: bool) -> list[str]:
  """jaxcnn modules an Import/ImportFrom node names (a name imported from
  a package counts as that submodule when it is one)."""
  if isinstance(node, ast.Import):
    names = [a.name for a in node.names]
  else:
    if node.level:
      base = module.split('.')
      if not is_package:
        base = base[:-1]
      base = base[:len(base) - node.level + 1]
      mod = '.'.join(base + ([node.module] if node.module else []))
    else:
      mod = node.module or ''
    names = [f'{mod}.{a.name}' if f'{mod}.{a.name}' in modules else mod
             for a in node.names]
  out = []
  for n in names:
    while n and n not in modules and '.' in n:
      n = n.rsplit('.', 1)[0]
    if n in modules and n != module:
      out.append(n)
  return out


def import_graph(root=ROOT) -> dict[str, set[str]]:
  modules = _modules(root)
  graph = {}
  for name, path in modules.items():
    tree = ast.parse(open(path).read(), path)
    package = path.endswith('__init__.py')
    graph[name] = {t for node in ast.walk(tree)
                   if isinstance(node, (ast.Import, ast.ImportFrom))
                   for t in _targets(name, node, modules, package)}
  return graph


def cycles(graph) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on, out = {}, {}, [], set(), []
  counter = [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))
  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


@pytest.fixture(scope='module')
def graph():
  return import_graph()


def _is_core(m: str) -> bool:
  return m in CORE or any(m == p or m.startswith(p + '.')
                          for p in CORE_PACKAGES)


def _under(m: str, prefixes) -> bool:
  return any(m == p or m.startswith(p + '.') for p in prefixes)


def test_the_core_imports_nothing_from_compress(graph):
  bad = {m: sorted(d for d in deps if _under(d, ('jaxcnn.compress',)))
         for m, deps in graph.items() if _is_core(m)}
  assert not {m: d for m, d in bad.items() if d}


def test_no_import_cycles(graph):
  assert cycles(graph) == []


def test_models_and_ops_import_no_training_code(graph):
  bad = {m: sorted(d for d in deps if _under(d, TRAINING))
         for m, deps in graph.items()
         if _under(m, ('jaxcnn.models', 'jaxcnn.ops'))}
  assert not {m: d for m, d in bad.items() if d}


def test_data_knows_no_models_or_training(graph):
  bad = {m: sorted(d for d in deps if _under(d, TRAINING + ('jaxcnn.models',)))
         for m, deps in graph.items() if _under(m, ('jaxcnn.data',))}
  assert not {m: d for m, d in bad.items() if d}


def test_only_the_run_directory_module_opens_config_json():
  """config.json is read and written by jaxcnn/workdir.py alone."""
  users = []
  for name, path in _modules().items():
    if name == 'jaxcnn.workdir':
      continue
    if "'config.json'" in open(path).read():
      users.append(name)
  assert users == []


def test_the_checkers_find_what_they_look_for(tmp_path):
  """The graph and cycle finder on a small package with a known shape: a
  cycle through a function-level import, a relative import, and a clean
  pair."""
  pkg = tmp_path / 'jaxcnn'
  (pkg / 'compress').mkdir(parents=True)
  (pkg / '__init__.py').write_text('')
  (pkg / 'compress' / '__init__.py').write_text('')
  (pkg / 'train.py').write_text(
      'def f():\n  from jaxcnn.compress import session\n')
  (pkg / 'compress' / 'session.py').write_text('from jaxcnn import train\n')
  (pkg / 'compress' / 'base.py').write_text('from . import session\n')
  (pkg / 'steps.py').write_text('import jaxcnn.losses\n')
  (pkg / 'losses.py').write_text('import numpy\n')
  g = import_graph(str(pkg))
  assert g['jaxcnn.train'] == {'jaxcnn.compress.session'}
  assert g['jaxcnn.compress.base'] == {'jaxcnn.compress.session'}
  assert g['jaxcnn.steps'] == {'jaxcnn.losses'}
  assert cycles(g) == [['jaxcnn.compress.session', 'jaxcnn.train']]
