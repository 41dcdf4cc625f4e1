"""What the shared CIFAR-10 copy's JPEG-q75 re-encoding costs in accuracy.

cifar10_train_first4000_exact.npz holds the first 4000 training images
byte-exact; the shared copy (cifar10_jpeg_bytes.npz) holds the same 4000 as
quality-75 JPEGs. Images 0..2999 train, 3000..3999 are held out. For each
training encoding (exact, jpeg) and seed, jaxcnn trains through the CLI and
the checkpoint is evaluated (--mode=eval_once) on the held-out 1000 in both
encodings: a 2x2 table per seed.

  JAXCNN_DATA_DIR=../shared/data python benchmarks/jpeg_cost.py \
      --seeds 0,1,2 --epochs 20 --out benchmarks/results/jpeg_cost.json

The figure that matters for docs/results.md is
  cost = acc(train exact, test exact) - acc(train jpeg, test jpeg)
(published numbers vs ours), per seed (same seed = same init, data order
and augmentation draws), with mean, sample std and a t-based 95% interval
over seeds. Also reported: the test-side shift alone (a model scored on
both encodings of the same images: paired, little noise) and the
train-side effect.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # t_{0.975, df}


def build_data(work: str, n_train: int) -> dict[str, str]:
  sys.path.insert(0, ROOT)
  from jaxcnn.data import sources
  shared = sources.resolve_data_dir(None)
  exact = np.load(os.path.join(shared, 'cifar10_train_first4000_exact.npz'))
  xe, y = exact['x_train'], exact['y_train'].astype(np.int32)
  s = sources.load('cifar10', data_dir=shared, allow_download=False)
  xj = s.x_train[:len(xe)]
  if not np.array_equal(s.y_train[:len(xe)], y):
    raise SystemExit('labels of the exact and JPEG copies differ')
  stats = {'mae': float(np.abs(xe.astype(np.int16) - xj).mean()),
           'median_abs': float(np.median(np.abs(xe.astype(np.int16) - xj))),
           'p99_abs': float(np.percentile(np.abs(xe.astype(np.int16) - xj),
                                          99))}
  dirs = {}
  for train_enc, xtr in (('exact', xe), ('jpeg', xj)):
    for test_enc, xte in (('exact', xe), ('jpeg', xj)):
      d = os.path.join(work, f'data_{train_enc}_{test_enc}')
      os.makedirs(d, exist_ok=True)
      path = os.path.join(d, 'cifar10.npz')
      if not os.path.exists(path):
        np.savez(path + '.tmp.npz', x_train=xtr[:n_train], y_train=y[:n_train],
                 x_test=xte[n_train:], y_test=y[n_train:])
        os.replace(path + '.tmp.npz', path)
      dirs[train_enc, test_enc] = d
  return dirs, stats


def _run(cmd, repo, log):
  with open(log, 'a') as f:
    p = subprocess.run(cmd, cwd=repo, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    f.write(' '.join(cmd) + '\n' + p.stdout)
  if p.returncode:
    raise SystemExit(f'failed ({p.returncode}): {" ".join(cmd)}; see {log}')
  return p.stdout


def _precisions(text: str) -> dict[str, float]:
  out = {}
  for m in re.finditer(r'precision @ 1 = ([0-9.]+)(?: \((\w+)[ )])?', text):
    out[m.group(2) or 'params'] = float(m.group(1))
  return out


def train_and_score(a, dirs, enc, seed, repo):
  wd = os.path.join(a.work, f'run_{enc}_s{seed}')
  base = [sys.executable, '-m', 'jaxcnn.main', '--config', a.config,
          '--workdir', wd, f'--config.seed={seed}',
          f'--config.cache_dir={a.work}/cache',
          f'--config.num_epochs={a.epochs}', '--config.write_summaries=False',
          '--config.eval_every_steps=0', '--config.checkpoint_every_steps=0',
          '--config.summary_every_steps=0', '--config.end_plots=False',
          '--config.log_every_steps=100']
  log = os.path.join(a.work, f'run_{enc}_s{seed}.log')
  t0 = time.time()
  _run(base + [f'--config.data_dir={dirs[enc, "exact"]}'], repo, log)
  scores = {}
  for test_enc in ('exact', 'jpeg'):
    text = _run(base + [f'--config.data_dir={dirs[enc, test_enc]}',
                        '--mode=eval_once'], repo, log)
    scores[test_enc] = _precisions(text)
  return {'train': enc, 'seed': seed, 'scores': scores,
          'wall_s': time.time() - t0, 'command': ' '.join(base)}


def _ci(values):
  m = statistics.mean(values)
  if len(values) < 2:
    return {'mean': m, 'n': len(values)}
  sd = statistics.stdev(values)
  half = T95[len(values) - 1] * sd / len(values) ** 0.5
  return {'mean': m, 'std': sd, 'ci95': [m - half, m + half],
          'n': len(values), 'values': values}


def summarise(runs, weights):
  by = {(r['train'], r['seed']): r['scores'] for r in runs}
  seeds = sorted({s for _, s in by})
  acc = lambda tr, te, s: by[tr, s][te][weights]
  full = [s for s in seeds if ('exact', s) in by and ('jpeg', s) in by]
  table = {f'{tr}->{te}': _ci([acc(tr, te, s) for s in seeds
                               if (tr, s) in by])
           for tr in ('exact', 'jpeg') for te in ('exact', 'jpeg')}
  out = {'weights': weights, 'accuracy': table}
  if full:
    out['cost_exact_exact_minus_jpeg_jpeg'] = _ci(
        [acc('exact', 'exact', s) - acc('jpeg', 'jpeg', s) for s in full])
    out['train_side_exact_minus_jpeg_on_exact_test'] = _ci(
        [acc('exact', 'exact', s) - acc('jpeg', 'exact', s) for s in full])
  out['test_side_jpeg_model_exact_minus_jpeg_test'] = _ci(
      [acc('jpeg', 'exact', s) - acc('jpeg', 'jpeg', s) for s in seeds
       if ('jpeg', s) in by])
  out['test_side_exact_model_exact_minus_jpeg_test'] = _ci(
      [acc('exact', 'exact', s) - acc('exact', 'jpeg', s) for s in seeds
       if ('exact', s) in by])
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default='configs/cifar10_tutorial.py:fast')
  p.add_argument('--epochs', type=float, default=20.0)
  p.add_argument('--train', type=int, default=3000)
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--repo', default=ROOT, help='checkout to run jaxcnn from')
  p.add_argument('--work', default='/tmp/jpeg_cost')
  p.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results',
                                               'jpeg_cost.json'))
  a = p.parse_args()
  os.makedirs(a.work, exist_ok=True)
  dirs, stats = build_data(a.work, a.train)
  runs = []
  for seed in (int(s) for s in a.seeds.split(',')):
    for enc in ('exact', 'jpeg'):
      r = train_and_score(a, dirs, enc, seed, a.repo)
      runs.append(r)
      print(enc, seed, r['scores'], f'{r["wall_s"]:.0f}s', flush=True)
  weights = sorted(runs[0]['scores']['exact'])
  result = {
      'what': 'accuracy cost of the JPEG-q75 CIFAR-10 copy vs PNG-exact',
      'command': 'python benchmarks/jpeg_cost.py ' + ' '.join(sys.argv[1:]),
      'data': f'first 4000 CIFAR-10 training images: 0..{a.train - 1} train, '
              f'{a.train}..3999 held out, each in both encodings',
      'pixel_error_jpeg_vs_exact': stats, 'config': a.config,
      'epochs': a.epochs, 'repo': a.repo, 'runs': runs,
      'summary': {w: summarise(runs, w) for w in weights}}
  report.write_json(a.out, result)


if __name__ == '__main__':
  main()
