"""Compress a trained workdir in one command, with short fine-tuning:

  python -m jaxcnn.compress --workdir TRAINED_DIR --method prune \
      --output OUT_DIR [--epochs 2] [--lr_scale 0.1] [--set prune.sparsity=0.8]

The trained run's config.json is the starting point (same data, input
pipeline and optimizer family); the CLI adds init_from, the method and a
fine-tuning schedule (cosine from lr_scale x the run's learning rate), then
runs ordinary training into OUT_DIR, which ends with the artifact
(model.jxcz), the dense baseline (dense.jxcz) and compression_report.json /
.md / accuracy_vs_compression.png. The config-driven form is
  python -m jaxcnn.main --config configs/compress/<x>.py --workdir OUT_DIR

--set KEY=VALUE goes through the same locked config as the main CLI's
--config.KEY=VALUE: KEY must exist (a 'prune.x' key means 'compress.prune.x';
config.model also takes new keys, the model's field overrides), VALUE is
parsed as the field's type, and compression values are range-checked
(compress/ranges.py). Exit status: 0 done, 2 a user error (bad flag, path,
key or value; one 'error: ...' line on stderr, nothing written), else
train.py's codes (e.g. interrupted).
"""
from __future__ import annotations

import argparse
import ast
import difflib
import math
import os
import sys

# As in jaxcnn/main.py: no TF oneDNN start-up lines (jaxcnn runs no TF compute).
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

import ml_collections
from absl import flags
from ml_collections.config_flags import config_path, tuple_parser

from jaxcnn import compile_cache, experiment, hostmem, runs
from jaxcnn import workdir as run_dir
from jaxcnn.compress import distill_report, ranges, structured
from jaxcnn.data import datasets
from jaxcnn.errors import ConfigError, JaxcnnError, WorkdirError

EXIT_USAGE = 2  # bad flags, paths, keys or values: nothing was written

METHOD_DEFAULTS = {
    'prune': {'prune.sparsity': 0.9, 'prune.schedule': 'gradual'},
    'filter_prune': {'filter_prune.ratio': 0.5},
    'svd': {'svd.param_ratio': 0.2},
    # Binary nets (docs/binary.md); include: all layers but first and last.
    'binary': {}, 'bwn': {}, 'xnor': {},
    'kmeans': {},
    # Quantization (docs/quantization.md); pq/qcnn: hidden Dense layers.
    'pq': {}, 'qcnn': {}, 'int8': {}, 'qat': {},
    # Issue 7: --workdir is the teacher (distill) or the dense input of the
    # prune -> k-means -> Huffman pipeline (deep_compression).
    'distill': {}, 'deep_compression': {},
}


def trained_config(workdir: str):
  """The trained run's config (workdir.read_config, the one reader of
  config.json); ConfigError if that file is missing or unusable."""
  try:
    return run_dir.require_config(workdir)
  except WorkdirError as e:
    raise ConfigError(str(e)) from None


def _graph(c):
  return structured.Graph(experiment.build_model(c), experiment.input_shape(c))


def _exact(paths) -> str:
  return '^(' + '|'.join(paths) + ')$'


def default_include(c, method: str) -> str:
  """svd: every hidden Dense layer; filter_prune: every removable conv."""
  layers = _graph(c).layers
  if method == 'svd':
    paths = [l.path for l in layers if l.kind == 'Dense'][:-1]
  else:
    paths = [l.path for l in layers if l.ok]
  if not paths:
    raise ConfigError(f'no layer of {c.model.name} suits {method} (set '
                      '--set svd.conv_include=REGEX for conv low-rank)')
  return _exact(paths)


def binary_include(c) -> str:
  """Every Conv/Dense kernel but the first and the last (kept float)."""
  paths = [l.path for l in _graph(c).layers if l.kind in ('Conv', 'Dense')]
  if len(paths) < 3:
    raise ConfigError(f'{c.model.name} has no hidden layer to binarise')
  return '^(' + '|'.join(paths[1:-1]) + ')/kernel$'


def build_config(args):
  """The fine-tuning config (locked); ConfigError for a bad --set."""
  c = trained_config(args.workdir)
  c.init_from = os.path.abspath(args.workdir)
  c.compress.method = args.method
  if args.method == 'distill':  # a new student, trained from scratch
    if not args.student:
      raise ConfigError('--method distill needs --student MODEL')
    c.init_from, c.compress.method = '', ''
    c.distill.teacher_workdir = os.path.abspath(args.workdir)
    with c.unlocked():
      c.model = {'name': args.student}
    c.ema_decay = 0.0
    c.l2.include = '.*'  # the teacher's regex may name layers the student lacks
  if args.method in ('svd', 'filter_prune'):
    c.compress[args.method].include = default_include(c, args.method)
  if args.method in ('pq', 'qcnn'):
    c.compress.pq.include = default_include(c, 'svd')[:-1] + '/kernel$'
  if args.method in ('binary', 'bwn', 'xnor'):
    c.compress.binary.include = binary_include(c)
  for k, v in METHOD_DEFAULTS.get(args.method, {}).items():
    sec, key = k.split('.')
    c.compress[sec][key] = v
  if c.dataset.name not in datasets.DATASETS or c.batch_size <= 0:
    raise ConfigError(f'{args.workdir}/config.json: dataset '
                      f'{c.dataset.name!r} or batch_size {c.batch_size} '
                      'unusable')
  spe = datasets.get_info(c.dataset.name).num_train // c.batch_size
  steps = max(1, int(args.epochs * spe))
  c.num_train_steps = steps
  lr_scale = args.lr_scale
  if lr_scale is None:  # a student learns from scratch: the teacher's lr
    lr_scale = 1.0 if args.method == 'distill' else 0.1
  c.optim.learning_rate *= lr_scale
  c.optim.schedule = 'cosine'
  c.optim.warmup_epochs = 0.0
  if args.method == 'distill':  # KD gradients start ~3x the CE's: warm up
    c.optim.warmup_epochs = min(1.0, args.epochs / 5)
  c.log_every_steps = min(100, steps)
  c.eval_every_steps = steps
  c.checkpoint_every_steps = max(1, min(1000, steps))
  c.compress.prune.end_step = int(0.6 * steps)
  c.compress.prune.frequency = max(1, steps // 25)
  c.compress.deep_compression.prune_steps = steps
  c.compress.deep_compression.quantize_steps = max(1, steps // 4)
  apply_overrides(c, args.set)
  return c


# How --set parses a value: by the field's type, as --config.* does.
_PARSERS = {float: flags.FloatParser(), int: flags.IntegerParser(),
            bool: flags.BooleanParser(), str: flags.ArgumentParser(),
            tuple: tuple_parser.TupleParser()}


def _literal(text: str):
  try:
    v = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
  return tuple(v) if isinstance(v, list) else v


def _unknown_key(c, key: str, shown: str) -> ConfigError:
  """Names the first missing part of `key` and the keys next to it."""
  node, parts = c, key.split('.')
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      break
    node = node[part]
  where = '.'.join(parts[:i]) or 'the config'
  if not isinstance(node, ml_collections.ConfigDict):
    return ConfigError(f'--set {shown}: {where} is a value, not a section')
  valid = sorted(node.keys())
  # At the top, 'prunee.x' most likely meant a compress section.
  pool = valid + (sorted(c.compress.keys()) if node is c else [])
  near = difflib.get_close_matches(part, pool, n=3)
  hint = f'did you mean {" or ".join(near)}? ' if near else ''
  return ConfigError(f'--set {shown}: unknown key {part!r} in {where}; {hint}'
                     f'valid keys there: {", ".join(valid)}')


def _full_key(c, key: str) -> str:
  """'prune.sparsity' -> 'compress.prune.sparsity'; others unchanged."""
  head = key.split('.')[0]
  return f'compress.{key}' if head in c.compress and head not in c else key


def apply_overrides(c, items) -> None:
  """--set KEY=VALUE on the locked config: unknown keys and values that do
  not parse as the field's type are ConfigErrors, never new fields."""
  c.lock()
  for item in items:
    shown, eq, text = item.partition('=')
    shown = shown.strip()
    if not eq or not shown:
      raise ConfigError(f'--set {item!r}: expected KEY=VALUE')
    key = _full_key(c, shown)
    if key == 'compress.method':
      raise ConfigError(f'--set {shown}: use --method')
    parts = key.split('.')
    if not all(p.isidentifier() for p in parts):
      raise ConfigError(f'--set {shown}: not a config key (dotted names, '
                        'e.g. prune.sparsity or optim.learning_rate)')
    if parts[0] == 'model' and len(parts) == 2 and parts[1] not in c.model:
      # A model field override (checked when the model is built).
      with c.model.unlocked():
        c.model[parts[1]] = _literal(text)
      continue
    try:
      field_type = config_path.get_type(key, c)
    except (KeyError, AttributeError, IndexError, TypeError):
      raise _unknown_key(c, key, shown) from None
    if field_type not in _PARSERS:
      what = (f'is a section; set one of its keys: '
              f'{", ".join(sorted(config_path.get_value(key, c).keys()))}'
              if issubclass(field_type, ml_collections.ConfigDict) else
              f'has type {field_type.__name__}, which --set cannot parse')
      raise ConfigError(f'--set {shown}: {what}')
    try:
      config_path.set_value(key, c, _PARSERS[field_type].parse(text))
    except (ValueError, TypeError) as e:
      raise ConfigError(f'--set {shown}={text}: not a valid '
                        f'{field_type.__name__} ({e})') from None


def check_args(args) -> None:
  """--workdir is a trained run; --output is a new directory apart from it
  (symlinks resolved): it must not be the workdir, inside it (training
  would rewrite the input's files) or above it; --epochs, --lr_scale > 0."""
  wd, out = os.path.realpath(args.workdir), os.path.realpath(args.output)
  if not os.path.isfile(os.path.join(wd, run_dir.CONFIG_FILE)):
    raise ConfigError(f'--workdir {args.workdir} has no config.json: not a '
                      'jaxcnn training workdir')
  if os.path.exists(out) and not os.path.isdir(out):
    raise ConfigError(f'--output {args.output} exists and is not a directory')
  common = os.path.commonpath([wd, out])
  if common == wd:
    where = 'is' if out == wd else 'is inside'
    raise ConfigError(f'--output {args.output} {where} --workdir '
                      f'{args.workdir}; use a new directory beside it')
  if common == out:
    raise ConfigError(f'--output {args.output} contains --workdir '
                      f'{args.workdir}; use a new directory beside it')
  for name in ('epochs', 'lr_scale'):
    v = getattr(args, name)
    if v is not None and not (math.isfinite(v) and v > 0):
      raise ConfigError(f'--{name} must be a finite number > 0, got {v}')


def _parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(prog='python -m jaxcnn.compress',
                               description=__doc__.split('\n\n')[0])
  ap.add_argument('--workdir', required=True, help='trained run directory')
  ap.add_argument('--method', required=True,
                  choices=sorted(METHOD_DEFAULTS))
  ap.add_argument('--output', required=True,
                  help='new run directory, apart from --workdir')
  ap.add_argument('--epochs', type=float, default=2.0,
                  help='fine-tuning length')
  ap.add_argument('--lr_scale', type=float, default=None,
                  help='fine-tuning lr = this x the trained run\'s lr '
                  '(default 0.1; distill: 1.0)')
  ap.add_argument('--student', default='',
                  help='distill: registry name of the student model')
  ap.add_argument('--set', action='append', default=[],
                  help='config override, e.g. prune.sparsity=0.8 or seed=1')
  return ap


def main(argv=None) -> int:
  args = _parser().parse_args(argv)  # usage errors: exit 2 (argparse)
  try:
    check_args(args)
    config = build_config(args)
    ranges.check(config)  # before train touches --output
    runs.train(config, args.output)
    if args.method == 'distill':
      distill_report.write_report(config, args.output)
  except JaxcnnError as e:
    print(f'error: {e}', file=sys.stderr)
    return getattr(e, 'exit_code', EXIT_USAGE)
  with open(os.path.join(args.output, 'compression_report.md')) as f:
    print(f.read())
  return 0


if __name__ == '__main__':
  hostmem.keep_freed_memory()  # before any thread allocates (hostmem.py)
  compile_cache.enable()  # reruns and resumes skip XLA compiles
  sys.exit(main())
