"""python -m jaxcnn.compress refuses bad paths, keys and values with one
'error: ...' line and exit code 2, before anything is written: the trained
workdir is never touched and --output is not created."""
import glob
import hashlib
import importlib.util
import json
import os

import pytest

from jaxcnn import runs
from jaxcnn.compress import __main__ as cli
from jaxcnn.compress import ranges
from jaxcnn.config_base import base_config
from jaxcnn.errors import ConfigError


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """configs/quickstart.py:smoke trained for its 4 steps."""
  from configs import quickstart
  c = quickstart.get_config('smoke')
  c.write_summaries = False
  d = str(tmp_path_factory.mktemp('trained') / 'T')
  runs.train(c, d)
  return d


def _snapshot(root):
  """Every file and directory under root: size, mtime and content hash."""
  out = {}
  for d, dirs, files in os.walk(root):
    for name in dirs + files:
      p = os.path.join(d, name)
      st = os.lstat(p)
      digest = (hashlib.sha1(open(p, 'rb').read()).hexdigest()
                if os.path.isfile(p) and not os.path.islink(p) else '')
      out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, digest)
  return out


def _refused(capsys, argv, *words):
  """main(argv) exits 2 with one stderr line naming `words`."""
  rc = cli.main(argv)
  out, err = capsys.readouterr()
  assert rc == cli.EXIT_USAGE == 2, (rc, err)
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), err
  for w in words:
    assert w in lines[0], (w, lines[0])
  assert out == ''
  return lines[0]


OVERLAPS = {
    'same': lambda t, tmp: t,
    'same, trailing slash': lambda t, tmp: t + os.sep,
    'same via ..': lambda t, tmp: os.path.join(t, 'checkpoints', '..'),
    'inside, new': lambda t, tmp: os.path.join(t, 'out'),
    'inside, existing': lambda t, tmp: os.path.join(t, 'checkpoints'),
    'symlink to it': lambda t, tmp: _link(tmp / 'link', t),
    'inside via symlink': lambda t, tmp: os.path.join(
        _link(tmp / 'link', t), 'new'),
    'parent': lambda t, tmp: os.path.dirname(t),
    'root': lambda t, tmp: os.sep,
    'a file': lambda t, tmp: _touch(tmp / 'file'),
    'a file in it': lambda t, tmp: os.path.join(t, 'config.json'),
}


def _link(path, target):
  if not os.path.islink(path):
    os.symlink(target, path)
  return str(path)


def _touch(path):
  path.write_text('x')
  return str(path)


@pytest.mark.parametrize('method', ['distill', 'prune'])
@pytest.mark.parametrize('case', sorted(OVERLAPS))
def test_output_that_overlaps_the_workdir_is_refused(trained, tmp_path,
                                                     capsys, case, method):
  before = _snapshot(trained)
  output = OVERLAPS[case](trained, tmp_path)
  extra = ['--student', 'lenet5'] if method == 'distill' else []
  _refused(capsys, ['--workdir', trained, '--output', output, '--method',
                    method, '--epochs', '0.05'] + extra, '--output')
  assert _snapshot(trained) == before


def test_workdir_given_through_a_symlink_is_resolved(trained, tmp_path,
                                                     capsys):
  link = _link(tmp_path / 'wd', trained)
  before = _snapshot(trained)
  _refused(capsys, ['--workdir', link, '--output', trained, '--method',
                    'prune'], '--output')
  assert _snapshot(trained) == before


def test_workdir_that_is_not_a_trained_run_is_refused(tmp_path, capsys):
  out = str(tmp_path / 'out')
  bad = tmp_path / 'bad'
  bad.mkdir()
  _refused(capsys, ['--workdir', str(tmp_path / 'missing'), '--output', out,
                    '--method', 'prune'], 'config.json')
  _refused(capsys, ['--workdir', str(bad), '--output', out, '--method',
                    'prune'], 'config.json')
  for text in ('{not json', '[1, 2]', '{"batch_size": "many"}',
               '{"model": {"hidden": [3]}}'):
    (bad / 'config.json').write_text(text)
    _refused(capsys, ['--workdir', str(bad), '--output', out, '--method',
                      'prune'], 'config.json')
  assert not os.path.exists(out)


@pytest.mark.parametrize('item,words', [
    ('prune.sparsityy=0.5', ("'sparsityy'", 'did you mean sparsity')),
    ('prunee.sparsity=0.5', ("'prunee'", 'did you mean prune')),
    ('optim.learning_rat=0.1', ("'learning_rat'", 'learning_rate')),
    ('svd.rnk=4', ("'rnk'", 'rank')),
    ('compress.kmeans.bits=3', ("'bits'", 'bits_conv')),
    ('distill.temprature=2', ("'temprature'", 'temperature')),
    ('seedd=1', ("'seedd'", 'seed')),
    ('prune.sparsity.max=1', ('prune.sparsity is a value',)),
    ('prune[0]=1', ('not a config key',)),
    ('prune.sparsity', ('expected KEY=VALUE',)),
    ('method=svd', ('use --method',)),
])
def test_unknown_set_key_is_refused(trained, tmp_path, capsys, item, words):
  out = str(tmp_path / 'out')
  _refused(capsys, ['--workdir', trained, '--output', out, '--method',
                    'prune', '--set', item], item.partition('=')[0], *words)
  assert not os.path.exists(out)


@pytest.mark.parametrize('item,words', [
    ('prune.sparsity=abc', ('not a valid float',)),
    ('seed=1.5', ('not a valid int',)),
    ('pq.bits=2.5', ('not a valid int',)),
    ('pq.bits=True', ('not a valid int',)),
    ('binary.clip=maybe', ('not a valid bool',)),
    ('prune=0.5', ('is a section', 'sparsity')),
])
def test_set_value_of_another_type_is_refused(trained, tmp_path, capsys,
                                              item, words):
  out = str(tmp_path / 'out')
  _refused(capsys, ['--workdir', trained, '--output', out, '--method',
                    'prune', '--set', item], *words)
  assert not os.path.exists(out)


def test_set_never_adds_keys():
  c = base_config()
  keys = c.compress.prune.keys()
  with pytest.raises(ConfigError, match='sparsityy'):
    cli.apply_overrides(c, ['prune.sparsityy=0.5'])
  assert c.compress.prune.keys() == keys


# (method, --set, field named in the error) per method family.
OUT_OF_RANGE = [
    ('prune', 'prune.sparsity=1.5', 'compress.prune.sparsity'),
    ('prune', 'prune.sparsity=1.0', 'compress.prune.sparsity'),
    ('prune', 'prune.sparsity=-0.1', 'compress.prune.sparsity'),
    ('prune', 'prune.sparsity=nan', 'compress.prune.sparsity'),
    ('prune', 'prune.frequency=0', 'compress.prune.frequency'),
    ('prune', 'prune.schedule=sudden', 'compress.prune.schedule'),
    ('prune', 'prune.initial_sparsity=0.95', 'compress.prune.initial_sparsity'),
    ('prune', 'prune.l1=-1', 'compress.prune.l1'),
    ('prune', 'index_bits=5', 'compress.index_bits'),
    ('prune', 'encoding=zip', 'compress.encoding'),
    ('filter_prune', 'filter_prune.ratio=1.0', 'compress.filter_prune.ratio'),
    ('filter_prune', 'filter_prune.norm=l3', 'compress.filter_prune.norm'),
    ('svd', 'svd.rank=-1', 'compress.svd.rank'),
    ('svd', 'svd.param_ratio=1.5', 'compress.svd.param_ratio'),
    ('svd', 'svd.param_ratio=0', 'compress.svd'),
    ('svd', 'svd.energy=-0.5', 'compress.svd.energy'),
    ('xnor', 'binary.act_bits=0', 'compress.binary.act_bits'),
    ('binary', 'binary.act_bits=5', 'compress.binary.act_bits'),
    ('bwn', 'binary.stochastic=true', 'compress.binary.stochastic'),
    ('kmeans', 'kmeans.bits_conv=0', 'compress.kmeans.bits_conv'),
    ('kmeans', 'kmeans.bits_fc=13', 'compress.kmeans.bits_fc'),
    ('kmeans', 'kmeans.init=random', 'compress.kmeans.init'),
    ('pq', 'pq.bits=0', 'compress.pq.bits'),
    ('pq', 'pq.sub_dim=0', 'compress.pq.sub_dim'),
    ('qcnn', 'pq.calib_batches=0', 'compress.pq.calib_batches'),
    ('int8', 'int8.weight_bits=1', 'compress.int8.weight_bits'),
    ('int8', 'int8.act_bits=9', 'compress.int8.act_bits'),
    ('qat', 'int8.act_percentile=0', 'compress.int8.act_percentile'),
    ('deep_compression', 'deep_compression.quantize_lr_scale=0',
     'compress.deep_compression.quantize_lr_scale'),
    ('deep_compression', 'deep_compression.quantize_steps=0',
     'compress.deep_compression.quantize_steps'),
    # distill's own checks (distill.py) also run before --output is made.
    ('distill', 'distill.temperature=0', 'distill.temperature'),
    ('distill', 'distill.hard_weight=1.5', 'distill.hard_weight'),
]


@pytest.mark.parametrize('method,item,field', OUT_OF_RANGE)
def test_out_of_range_value_is_refused(trained, tmp_path, capsys, method,
                                       item, field):
  out = str(tmp_path / 'out')
  extra = ['--student', 'lenet5'] if method == 'distill' else []
  _refused(capsys, ['--workdir', trained, '--output', out, '--method',
                    method, '--set', item, '--epochs', '0.05'] + extra, field)
  assert not os.path.exists(out)


@pytest.mark.parametrize('flag,value', [
    ('--epochs', '0'), ('--epochs', '-1'), ('--epochs', 'nan'),
    ('--epochs', 'inf'), ('--lr_scale', '0'), ('--lr_scale', '-0.5')])
def test_non_positive_epochs_or_lr_scale_is_refused(trained, tmp_path,
                                                    capsys, flag, value):
  out = str(tmp_path / 'out')
  _refused(capsys, ['--workdir', trained, '--output', out, '--method',
                    'prune', flag, value], flag)
  assert not os.path.exists(out)


ARGS = (None, 'smoke', 'int4', 'conv', 'qcnn', 'sparse_reg', 'plain', 'pruned',
        's80', 's85', 's80c5', 'baseline', 'short')


def test_ranges_pass_defaults_and_every_shipped_config():
  """The ranges reject no config in configs/, with any argument it takes."""
  ranges.check(base_config())
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  checked = 0
  for f in sorted(glob.glob(os.path.join(root, 'configs', '**', '*.py'),
                            recursive=True)):
    spec = importlib.util.spec_from_file_location('_cfg', f)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    for arg in ARGS if hasattr(m, 'get_config') else ():
      try:
        c = m.get_config(arg)
      except (ValueError, TypeError):  # an argument this file does not take
        continue
      ranges.check(c)
      checked += 1
  assert checked > 30


def test_model_overrides_of_the_trained_run_are_kept(tmp_path):
  """config.json's model fields beyond 'name' (an MLP's hidden sizes) are
  the model; dropping them built another net than the checkpoint's."""
  (tmp_path / 'config.json').write_text(json.dumps(
      {'model': {'name': 'mlp', 'hidden': [64, 32]}, 'seed': 3}))
  c = cli.trained_config(str(tmp_path))
  assert c.model.to_dict() == {'name': 'mlp', 'hidden': (64, 32)}
  assert c.seed == 3


def test_distill_into_a_new_output_trains(trained, tmp_path, capsys):
  """The reported case: distill --output T exited 0 without training and
  rewrote T/config.json. Refused (above); a new --output trains."""
  before = _snapshot(trained)
  out = str(tmp_path / 'student')
  rc = cli.main(['--workdir', trained, '--output', out, '--method',
                 'distill', '--student', 'lenet5', '--epochs', '0.05',
                 '--set', 'distill.temperature=2.0'])
  assert rc == 0, capsys.readouterr().err
  saved = json.load(open(os.path.join(out, 'config.json')))
  assert saved['distill']['teacher_workdir'] == os.path.abspath(trained)
  assert saved['distill']['temperature'] == 2.0
  assert os.path.exists(os.path.join(out, 'model.jxcz'))
  assert _snapshot(trained) == before
