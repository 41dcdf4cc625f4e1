"""ResNet-20 parity: jaxcnn (`configs/resnet20_cifar.py:paper`, through the
real CLI) against an independent PyTorch ResNet-20
(benchmarks/reference/resnet20_torch.py), each in its own process, on the
same data, with the paper's schedule compressed to a few epochs.

  JAXCNN_DATA_DIR=../shared/data python benchmarks/parity_resnet20.py \
      --train 10000 --test_per_class 500 --epochs 5 --seeds 0,1 \
      --out benchmarks/results/parity_resnet20.json

Data: the first `--train` images of the shared CIFAR-10 copy's training
split (data_batch_1 order) and the first `--test_per_class` test images of
each class (original order within class), written once as
WORK/data/cifar10.npz, read by both. Both subtract jaxcnn's CIFAR-10 mean
image (augment.cifar10_pixel_mean, saved as pixel_mean.npy for torch), use
the same epoch permutations (default_rng([seed, epoch])), batch 128, drop
the last partial batch, SGD 0.9, wd 1e-4 on weights, lr 0.1 x0.1 at 1/2
and 3/4 of the steps, and evaluate BN running averages after every epoch.
Runs alternate jaxcnn / torch so shared-CPU load hits both alike.
--repo runs the jaxcnn CLI from another checkout (e.g. a `git archive`
snapshot while the working tree is mid-refactor); the command is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_REF = os.path.join(ROOT, 'benchmarks', 'reference', 'resnet20_torch.py')


def build_data(work: str, n_train: int, per_class: int) -> str:
  sys.path.insert(0, ROOT)
  from jaxcnn.data import augment, sources
  data = os.path.join(work, 'data')
  path = os.path.join(data, 'cifar10.npz')
  if os.path.exists(path):
    return data
  os.makedirs(data, exist_ok=True)
  shared = sources.resolve_data_dir(None)
  s = sources.load('cifar10', data_dir=shared, allow_download=False)
  within = np.load(os.path.join(shared, 'cifar10_jpeg_bytes.npz'))[
      'test_index_within_class']
  test = np.flatnonzero(within < per_class)
  np.save(os.path.join(data, 'pixel_mean.npy'), augment.cifar10_pixel_mean())
  np.savez(path + '.tmp.npz', x_train=s.x_train[:n_train],
           y_train=s.y_train[:n_train], x_test=s.x_test[test],
           y_test=s.y_test[test])
  os.replace(path + '.tmp.npz', path)
  return data


def run_jax(work, data, seed, steps, spe, log, repo=ROOT):
  wd = os.path.join(work, f'jax_s{seed}')
  cmd = [sys.executable, '-m', 'jaxcnn.main', '--config',
         'configs/resnet20_cifar.py:paper', '--workdir', wd,
         f'--config.data_dir={data}', f'--config.cache_dir={work}/cache',
         f'--config.seed={seed}', f'--config.num_train_steps={steps}',
         f'--config.eval_every_steps={spe}', f'--config.log_every_steps={spe}',
         '--config.checkpoint_every_steps=0', '--config.eval_batch_size=1000',
         '--config.write_summaries=False']
  t0, done = time.time(), os.path.exists(os.path.join(wd, 'final_metrics.json'))
  if not done:  # a finished run is read back, not resumed
    with open(log, 'w') as f:
      subprocess.run(cmd, cwd=repo, stdout=f, stderr=subprocess.STDOUT,
                     check=True)
  curve, train_loss, seen = [], {}, set()
  with open(os.path.join(wd, 'metrics.jsonl')) as f:
    rows = [json.loads(l) for l in f if l.strip()]
  for r in rows:
    if r['split'] == 'train':
      train_loss[r['step']] = r['loss']
  for r in rows:
    if r['split'] == 'eval_params' and r['step'] not in seen:
      seen.add(r['step'])
      curve.append({'epoch': -(-r['step'] // spe), 'step': r['step'],
                    'test_acc': r['precision@1'], 'test_loss': r['loss'],
                    'train_loss': train_loss.get(r['step'])})
  return {'framework': 'jaxcnn', 'seed': seed, 'repo': repo,
          'command': ' '.join(cmd), 'curve': curve,
          'wall_s': _wall(rows) if done else time.time() - t0}


def _wall(rows):
  """Train time of an earlier run, from its logged sec_per_batch."""
  train = [r for r in rows if r['split'] == 'train']
  return sum(r['sec_per_batch'] * (r['step'] - p) for r, p in
             zip(train, [0] + [r['step'] for r in train]))


def run_torch(work, data, seed, steps, log, threads=1):
  out = os.path.join(work, f'torch_s{seed}.json')
  # One thread: on the shared, oversubscribed 2 cores torch's two OpenMP
  # threads ran ~5x slower than one (322 s per 10k-image epoch).
  cmd = [sys.executable, TORCH_REF, '--data', f'{data}/cifar10.npz',
         '--pixel_mean', f'{data}/pixel_mean.npy', '--steps', str(steps),
         '--seed', str(seed), '--threads', str(threads), '--out', out]
  t0, done = time.time(), os.path.exists(out)
  if not done:  # a finished run is read back
    with open(log, 'w') as f:
      subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                     check=True)
  with open(out) as f:
    r = json.load(f)
  return {'framework': 'torch', 'seed': seed, 'command': ' '.join(cmd),
          'curve': r['curve'],
          'wall_s': r['curve'][-1]['seconds'] if done else time.time() - t0}


def summarise(runs):
  out = {}
  for fw in ('jaxcnn', 'torch'):
    curves = [r['curve'] for r in runs if r['framework'] == fw]
    if not curves:
      continue
    epochs = len(curves[0])
    accs = [[c[e]['test_acc'] for c in curves] for e in range(epochs)]
    out[fw] = {'mean': [statistics.mean(a) for a in accs],
               'per_seed': accs,
               'spread': [max(a) - min(a) for a in accs]}
  if len(out) == 2:
    out['jaxcnn_minus_torch'] = [a - b for a, b in
                                 zip(out['jaxcnn']['mean'], out['torch']['mean'])]
    j, t = out['jaxcnn']['per_seed'][-1], out['torch']['per_seed'][-1]
    if len(j) > 1 and len(t) > 1:  # Welch's t on the final accuracies
      se = (statistics.variance(j) / len(j) +
            statistics.variance(t) / len(t)) ** 0.5
      out['final'] = {'jaxcnn': j, 'torch': t,
                      'jaxcnn_std': statistics.stdev(j),
                      'torch_std': statistics.stdev(t),
                      'diff': statistics.mean(j) - statistics.mean(t),
                      'welch_t': (statistics.mean(j) - statistics.mean(t)) /
                                 se if se else None}
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--train', type=int, default=10000)
  p.add_argument('--test_per_class', type=int, default=500)
  p.add_argument('--epochs', type=int, default=5)
  p.add_argument('--seeds', default='0,1')
  p.add_argument('--frameworks', default='jaxcnn,torch')
  p.add_argument('--torch_threads', type=int, default=1)
  p.add_argument('--repo', default=ROOT, help='checkout to run jaxcnn from')
  p.add_argument('--work', default='/tmp/parity_resnet20')
  p.add_argument('--out', default=os.path.join(
      ROOT, 'benchmarks', 'results', 'parity_resnet20.json'))
  a = p.parse_args()
  os.makedirs(a.work, exist_ok=True)
  data = build_data(a.work, a.train, a.test_per_class)
  spe = a.train // 128
  steps = a.epochs * spe
  runs = []
  for seed in (int(s) for s in a.seeds.split(',')):
    for fw in a.frameworks.split(','):
      log = os.path.join(a.work, f'{fw}_s{seed}.log')
      r = (run_jax(a.work, data, seed, steps, spe, log, a.repo) if fw == 'jaxcnn'
           else run_torch(a.work, data, seed, steps, log, a.torch_threads))
      r['load_after'] = os.getloadavg()
      runs.append(r)
      print(fw, seed, [round(c['test_acc'], 4) for c in r['curve']],
            f'{r["wall_s"]:.0f}s', flush=True)
  result = {
      'what': 'ResNet-20 :paper recipe, jaxcnn CLI vs independent PyTorch',
      'command': 'python benchmarks/parity_resnet20.py ' + ' '.join(sys.argv[1:]),
      'data': {'train': f'first {a.train} of the shared JPEG-q75 CIFAR-10 '
                        'train split', 'test': f'first {a.test_per_class} '
                        'test images per class (JPEG-q75 copy)'},
      'steps': steps, 'steps_per_epoch': spe,
      'schedule': f'lr 0.1, x0.1 at step {steps // 2} and {3 * steps // 4}',
      'host': {'machine': platform.machine(), 'cpus': os.cpu_count()},
      'runs': runs, 'summary': summarise(runs)}
  report.write_json(a.out, result)


if __name__ == '__main__':
  main()
