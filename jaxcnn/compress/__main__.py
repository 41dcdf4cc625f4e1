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
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys

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


def _merge(node, d):
  for k, v in d.items():
    if isinstance(v, dict) and k in node and hasattr(node[k], 'keys'):
      _merge(node[k], v)
    elif k in node:
      node[k] = tuple(v) if isinstance(v, list) else v


def trained_config(workdir: str):
  from jaxcnn.config_base import base_config
  with open(os.path.join(workdir, 'config.json')) as f:
    saved = json.load(f)
  c = base_config()
  _merge(c, saved)
  return c


def _graph(c):
  from jaxcnn import experiment
  from jaxcnn.compress import structured
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
    raise SystemExit(f'error: no layer of {c.model.name} suits {method} '
                     '(set --set svd.conv_include=REGEX for conv low-rank)')
  return _exact(paths)


def binary_include(c) -> str:
  """Every Conv/Dense kernel but the first and the last (kept float)."""
  paths = [l.path for l in _graph(c).layers if l.kind in ('Conv', 'Dense')]
  if len(paths) < 3:
    raise SystemExit(f'error: {c.model.name} has no hidden layer to binarise')
  return '^(' + '|'.join(paths[1:-1]) + ')/kernel$'


def build_config(args):
  from jaxcnn.data import datasets
  c = trained_config(args.workdir)
  c.init_from = os.path.abspath(args.workdir)
  c.compress.method = args.method
  if args.method == 'distill':  # a new student, trained from scratch
    if not args.student:
      raise SystemExit('error: --method distill needs --student MODEL')
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
  for item in args.set:
    key, _, value = item.partition('=')
    node = c.compress if key.split('.')[0] in c.compress else c
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    node[leaf] = value
  return c


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog='python -m jaxcnn.compress',
                               description=__doc__.split('\n\n')[0])
  ap.add_argument('--workdir', required=True, help='trained run directory')
  ap.add_argument('--method', required=True,
                  choices=sorted(METHOD_DEFAULTS))
  ap.add_argument('--output', required=True, help='new run directory')
  ap.add_argument('--epochs', type=float, default=2.0,
                  help='fine-tuning length')
  ap.add_argument('--lr_scale', type=float, default=None,
                  help='fine-tuning lr = this x the trained run\'s lr '
                  '(default 0.1; distill: 1.0)')
  ap.add_argument('--student', default='',
                  help='distill: registry name of the student model')
  ap.add_argument('--set', action='append', default=[],
                  help='config override, e.g. prune.sparsity=0.8 or seed=1')
  args = ap.parse_args(argv)
  from jaxcnn import train
  from jaxcnn.errors import JaxcnnError
  config = build_config(args)
  config.lock()
  try:
    train.train_and_evaluate(config, args.output)
    if args.method == 'distill':
      from jaxcnn.compress import distill
      distill.write_report(config, args.output)
  except JaxcnnError as e:
    print(f'error: {e}', file=sys.stderr)
    return getattr(e, 'exit_code', 2)
  with open(os.path.join(args.output, 'compression_report.md')) as f:
    print(f.read())
  return 0


if __name__ == '__main__':
  sys.exit(main())
