"""Deployed-model report for one training workdir (issue #20):

  python -m benchmarks.export_bench --workdir W [--out DIR] [--rounds 7]

Exports W as StableHLO and as LiteRT fp32 / fp16 / int8 (batch 1 and 32,
fixed), then writes DIR/export_report.{json,md} (DIR defaults to
W/export) with
- file bytes of each export;
- top-1 accuracy on the dataset's full test set in each runtime, beside
  jaxcnn's own eval path (predict.Predictor, XLA) and the top-1 agreement;
- latency, batch 1 and 32, 1 and 2 threads: LiteRT (XNNPACK) against
  jaxcnn's XLA eval path, as the median of interleaved rounds.

XLA:CPU's thread count is fixed at process start (one thread:
--xla_cpu_multi_thread_eigen=false, as benchmarks/run.py does; two: XLA's
default on this 2-core machine), so each thread count runs in its own
worker process, which interleaves all runtimes for that count.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402

QUANTS = ('none', 'fp16', 'int8')
BATCHES = (1, 32)
THREADS = (1, 2)
ROUND_SECONDS = 0.25  # each runner's share of one round


def export_all(workdir: str, out: str, calib_images: int) -> dict:
  """{name: path}: 'stablehlo' (symbolic batch) and 'tflite_<q>_b<n>'."""
  from jaxcnn.export import convert
  paths = {'stablehlo': os.path.join(out, 'model.stablehlo')}
  convert.export(workdir, 'stablehlo', paths['stablehlo'])
  for q in QUANTS:
    for b in BATCHES:
      name = f'tflite_{q}_b{b}'
      paths[name] = os.path.join(out, f'model_{q}_b{b}.tflite')
      convert.export(workdir, 'tflite', paths[name], quantize=q, batch=b,
                     calib_images=calib_images)
  return paths


def accuracy(workdir: str, paths: dict) -> dict:
  """Top-1 on the full test set: jaxcnn's eval path and every runtime."""
  from jaxcnn import predict
  from jaxcnn import experiment
  from jaxcnn.export import runtime
  pred = predict.Predictor(workdir)
  c = pred.config
  splits = experiment.load_splits(c)
  x, y = splits.x_test, splits.y_test
  bs = c.eval_batch_size
  ref = np.concatenate([pred.predict(x[i:i + bs])
                        for i in range(0, len(x), bs)])
  rows = {'jaxcnn_xla': {'top1': float(np.mean(ref.argmax(1) == y))}}
  for name, path in paths.items():
    if name.endswith('_b1'):  # same graph as _b32, one image per call
      continue
    probs = runtime.ExportedModel(path, num_threads=2).predict(x)
    rows[name] = {'top1': float(np.mean(probs.argmax(1) == y)),
                  'agree_top1': float(np.mean(probs.argmax(1) ==
                                              ref.argmax(1))),
                  'max_abs_prob_diff': float(np.abs(probs - ref).max())}
  return {'num_test': int(len(y)), 'weights': 'auto', 'rows': rows}


def _timed(fn, n: int) -> float:
  t = time.perf_counter()
  for _ in range(n):
    fn()
  return (time.perf_counter() - t) / n


def _runners(workdir: str, paths: dict, threads: int, x: np.ndarray) -> dict:
  """{(runtime, batch): zero-argument callable running one batch}."""
  from jaxcnn import predict
  from jaxcnn.export import runtime
  pred = predict.Predictor(workdir)
  out = {}
  for b in BATCHES:
    xb = x[:b]
    # Both sides return host numpy probabilities.
    out['jaxcnn_xla', b] = lambda xb=xb: pred.predict(xb)
    for q in QUANTS:
      with open(paths[f'tflite_{q}_b{b}'], 'rb') as f:
        r = runtime.LiteRTRunner(f.read(), num_threads=threads)
      out[f'litert_{q}', b] = lambda r=r, xb=xb: r(xb)
  return out


def worker(workdir: str, paths: dict, threads: int, rounds: int) -> dict:
  """Median seconds per batch of every runner, rounds interleaved."""
  from jaxcnn.data import datasets
  with open(os.path.join(workdir, 'config.json')) as f:
    info = datasets.get_info(json.load(f)['dataset']['name'])
  x = np.random.default_rng(0).integers(
      0, 256, (max(BATCHES), *info.image_shape), dtype=np.uint8)
  runners = _runners(workdir, paths, threads, x)
  calls = {}
  for key, fn in runners.items():  # warm-up (compiles XLA), sizes a round
    fn()
    calls[key] = max(1, int(ROUND_SECONDS / max(_timed(fn, 3), 1e-6)))
  times = {k: [] for k in runners}
  for _ in range(rounds):
    for key, fn in runners.items():
      times[key].append(_timed(fn, calls[key]))
  return {f'{k[0]}|{k[1]}': {'median_s': float(np.median(v)),
                             'min_s': float(np.min(v)),
                             'max_s': float(np.max(v)), 'calls': calls[k]}
          for k, v in times.items()}


def latency(workdir: str, paths: dict, rounds: int, out: str) -> dict:
  res = {}
  for t in THREADS:
    env = dict(os.environ)
    if t == 1:
      env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                          ' --xla_cpu_multi_thread_eigen=false')
    dest = os.path.join(out, f'latency_t{t}.json')
    subprocess.run([sys.executable, '-m', 'benchmarks.export_bench',
                    '--workdir', workdir, '--rounds', str(rounds),
                    '--worker_threads', str(t), '--worker_paths',
                    json.dumps(paths), '--worker_out', dest],
                   env=env, check=True)
    with open(dest) as f:
      res[str(t)] = json.load(f)
    os.remove(dest)
  return res


def _cpu() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      return next(l.split(':', 1)[1].strip() for l in f
                  if l.startswith('model name'))
  except (OSError, StopIteration):
    return platform.machine()


def _versions() -> dict:
  from importlib import metadata
  return {p: metadata.version(p) for p in ('jax', 'jaxlib', 'tensorflow-cpu',
                                           'ai-edge-litert')}


def to_markdown(r: dict) -> str:
  m, acc = r['machine'], r['accuracy']
  lines = [
      f"`{r['workdir']}` ({r['model']} on {r['dataset']}, step {r['step']}, "
      f"{r['weights']} weights). {m['cpu']}, {m['cores']} cores; load "
      f"average {m['load_start']:.1f} at start, {m['load_end']:.1f} at end"
      + (' (shared, busy machine)' if m['load_start'] > 1 else '') + '.',
      'Versions: ' + ', '.join(f'{k} {v}' for k, v in r['versions'].items())
      + '.', '', f"Accuracy on the full test set ({acc['num_test']} images):",
      '', '| runtime | file bytes | top-1 | agrees with jaxcnn | '
      'max abs prob diff |', '|---|---|---|---|---|']
  for name, row in acc['rows'].items():
    file = r['bytes'].get(name.replace('_b32', '_b1'), None)
    lines.append(
        f"| {name} | {file if file else '-'} | {100 * row['top1']:.2f}% | "
        + (f"{100 * row['agree_top1']:.2f}% | {row['max_abs_prob_diff']:.4f}"
           if 'agree_top1' in row else '- | -') + ' |')
  lines += ['', f"Latency, ms per batch (ms/image), median of "
            f"{r['rounds']} interleaved rounds:", '',
            '| runtime | batch | ' + ' | '.join(f'{t} thread(s)'
                                               for t in THREADS) + ' |',
            '|---|---|' + '---|' * len(THREADS)]
  keys = list(r['latency'][str(THREADS[0])])
  for key in keys:
    name, b = key.split('|')
    cells = []
    for t in THREADS:
      s = r['latency'][str(t)][key]['median_s'] * 1e3
      cells.append(f'{s:.3f} ({s / int(b):.3f})')
    lines.append(f'| {name} | {b} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> dict | None:
  p = argparse.ArgumentParser(prog='python -m benchmarks.export_bench',
                              description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--out', default='', help='default: WORKDIR/export')
  p.add_argument('--rounds', type=int, default=7)
  p.add_argument('--calib_images', type=int, default=512)
  # Internal: one latency worker per thread count (see the docstring).
  p.add_argument('--worker_threads', type=int, default=0,
                 help=argparse.SUPPRESS)
  p.add_argument('--worker_paths', default='', help=argparse.SUPPRESS)
  p.add_argument('--worker_out', default='', help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.worker_threads:
    res = worker(a.workdir, json.loads(a.worker_paths), a.worker_threads,
                 a.rounds)
    with open(a.worker_out, 'w') as f:
      json.dump(res, f)
    return None
  out = a.out or os.path.join(a.workdir, 'export')
  os.makedirs(out, exist_ok=True)
  load_start = os.getloadavg()[0]
  paths = export_all(a.workdir, out, a.calib_images)
  with open(paths['stablehlo'] + '.json') as f:
    meta = json.load(f)
  report = {
      'workdir': os.path.abspath(a.workdir), 'model': meta['model'],
      'dataset': meta['dataset'], 'step': meta['step'],
      'weights': meta['weights'], 'rounds': a.rounds,
      'bytes': {k: os.path.getsize(v) for k, v in paths.items()},
      'accuracy': accuracy(a.workdir, paths),
      'latency': latency(a.workdir, paths, a.rounds, out),
      'versions': _versions(),
      'command': 'python -m benchmarks.export_bench ' + ' '.join(
          argv if argv is not None else sys.argv[1:])}
  report['machine'] = {'cpu': _cpu(),
                       'cores': os.cpu_count(), 'load_start': load_start,
                       'load_end': os.getloadavg()[0]}
  with open(os.path.join(out, 'export_report.json'), 'w') as f:
    json.dump(report, f, indent=1)
  md = to_markdown(report)
  with open(os.path.join(out, 'export_report.md'), 'w') as f:
    f.write(md)
  print(md)
  return report


if __name__ == '__main__':
  main()
