"""Deployed-model report for training and compression workdirs (issue #20):

  python -m benchmarks.export_bench --workdir W [W ...] [--out DIR] \
      [--rounds 7] [--batches 1 32] [--threads 1 2] [--sparse]

Exports every workdir in each format/quantization its family supports
(jaxcnn/export/families.py: a plain run and most families: StableHLO and
LiteRT fp32 / fp16 / int8; int8/qat artifacts: StableHLO (jaxcnn's integer
path) and LiteRT int8), LiteRT at each fixed --batches size, then writes
DIR/export_report.{json,md} (DIR defaults to W/export for one workdir) with
- file bytes of each export, gzip -9 bytes, the .jxcz artifact's bytes;
- top-1 accuracy on the dataset's full test set in each runtime, beside
  jaxcnn's own eval path (XLA: predict.Predictor for a plain run,
  compress.artifact_model for an artifact) and the top-1 agreement;
- latency of LiteRT (XNNPACK) against jaxcnn's XLA path, median of
  interleaved rounds over all workdirs and runtimes, load average recorded;
- MACs per image of each net as it runs (compress.apply.count_macs).
--sparse adds LiteRT files with sparse weight tensors (the converter's
EXPERIMENTAL_SPARSITY) for prune / deep_compression workdirs.

XLA:CPU's thread count is fixed at process start (one thread:
--xla_cpu_multi_thread_eigen=false, as benchmarks/run.py does; two: XLA's
default on this 2-core machine), so each thread count runs in its own
worker process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402

from benchmarks import machine  # noqa: E402
from jaxcnn import experiment, predict, reopen  # noqa: E402
from jaxcnn.compress import apply, artifact_model  # noqa: E402
from jaxcnn.export import convert, families, runtime  # noqa: E402

ROUND_SECONDS = 0.25  # each runner's share of one round
SPARSE_METHODS = ('prune', 'deep_compression')


def label_of(workdir: str) -> str:
  return os.path.basename(os.path.normpath(workdir))


def variants(method: str, batches, sparse: bool) -> list:
  """[(name, fmt, quantize, batch, sparse)] the workdir's family exports."""
  pairs = families.MAPPING[method][1] if method else families._FLOAT
  out = [('stablehlo', 'stablehlo', 'none', 0, False)] if 'none' in \
      pairs['stablehlo'] else []
  for q in pairs['tflite']:
    out += [(f'tflite_{q}_b{b}', 'tflite', q, b, False) for b in batches]
    if sparse and method in SPARSE_METHODS and q == 'none':
      out += [(f'tflite_{q}_sparse_b{b}', 'tflite', q, b, True)
              for b in batches]
  return out


class Reference:
  """jaxcnn's own XLA eval path of a workdir, host numpy probabilities."""

  def __init__(self, workdir: str):
    config = reopen.config_of(workdir)
    self.method = families.method_of(config)
    self.config = config
    if self.method:
      am = artifact_model.load(os.path.join(workdir, families.ARTIFACT),
                               config)
      self.predict, model, variables = am.predict, am.model, am.variables
      self.artifact_bytes = os.path.getsize(am.path)
    else:
      pred = predict.Predictor(workdir)
      self.predict = pred.predict
      model = experiment.build_model(pred.config)
      variables = {'params': pred.params, 'batch_stats': pred.batch_stats}
      self.artifact_bytes = None
    shape = experiment.input_shape(config)
    self.macs = int(sum(apply.count_macs(model, variables, shape).values()))


def export_all(workdirs, out: str, batches, sparse: bool,
               calib_images: int) -> dict:
  """{label: {name: path}}."""
  paths = {}
  for w in workdirs:
    label, method = label_of(w), families.method_of(reopen.config_of(w))
    paths[label] = {}
    for name, fmt, q, b, sp in variants(method, batches, sparse):
      ext = 'stablehlo' if fmt == 'stablehlo' else 'tflite'
      path = os.path.join(out, f'{label}_{name}.{ext}')
      convert.export(w, fmt, path, quantize=q, batch=b,
                     calib_images=calib_images, sparse=sp)
      paths[label][name] = path
  return paths


def accuracy(workdir: str, ref: Reference, paths: dict) -> dict:
  """Top-1 on the full test set: jaxcnn's eval path and every runtime."""
  splits = experiment.load_splits(ref.config)
  x, y = splits.x_test, splits.y_test
  bs = int(ref.config.eval_batch_size)
  p_ref = np.concatenate([ref.predict(x[i:i + bs])
                          for i in range(0, len(x), bs)])
  rows = {'jaxcnn_xla': {'top1': float(np.mean(p_ref.argmax(1) == y))}}
  seen = set()
  for name, path in paths.items():
    graph = name.rsplit('_b', 1)[0]
    if graph in seen:  # the same graph at another fixed batch
      continue
    seen.add(graph)
    probs = runtime.ExportedModel(path, num_threads=2).predict(x)
    rows[name] = {'top1': float(np.mean(probs.argmax(1) == y)),
                  'agree_top1': float(np.mean(probs.argmax(1) ==
                                              p_ref.argmax(1))),
                  'max_abs_prob_diff': float(np.abs(probs - p_ref).max())}
  return {'num_test': int(len(y)), 'rows': rows}


def _timed(fn, n: int) -> float:
  t = time.perf_counter()
  for _ in range(n):
    fn()
  return (time.perf_counter() - t) / n


def worker(workdirs, paths: dict, threads: int, rounds: int, batches) -> dict:
  """Median seconds per batch of every runner, all workdirs interleaved."""
  runners = {}
  for w in workdirs:
    label = label_of(w)
    ref = Reference(w)
    with open(next(iter(paths[label].values())) + '.json') as f:
      h, wd, c = json.load(f)['input']['shape'][1:]  # the stored images
    x = np.random.default_rng(0).integers(0, 256, (max(batches), h, wd, c),
                                          dtype=np.uint8)
    for b in batches:
      runners[label, 'jaxcnn_xla', b] = lambda f=ref.predict, xb=x[:b]: f(xb)
      for name, path in paths[label].items():
        if name == 'stablehlo' or not name.endswith(f'_b{b}'):
          continue
        with open(path, 'rb') as f:
          r = runtime.LiteRTRunner(f.read(), num_threads=threads)
        runners[label, name.rsplit('_b', 1)[0], b] = \
            lambda r=r, xb=x[:b]: r(xb)
  calls = {}
  for key, fn in runners.items():  # warm-up (compiles XLA), sizes a round
    fn()
    calls[key] = max(1, int(ROUND_SECONDS / max(_timed(fn, 3), 1e-6)))
  times = {k: [] for k in runners}
  loads = [os.getloadavg()[0]]
  for _ in range(rounds):
    for key, fn in runners.items():
      times[key].append(_timed(fn, calls[key]))
    loads.append(os.getloadavg()[0])
  return {'load_average': loads, 'runs': [
      {'workdir': k[0], 'runtime': k[1], 'batch': k[2],
       'median_s': float(np.median(v)), 'min_s': float(np.min(v)),
       'max_s': float(np.max(v)), 'calls': calls[k]}
      for k, v in times.items()]}


def latency(workdirs, paths, rounds, out, threads, batches) -> dict:
  res = {}
  for t in threads:
    env = dict(os.environ)
    if t == 1:
      env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                          ' --xla_cpu_multi_thread_eigen=false')
    dest = os.path.join(out, f'latency_t{t}.json')
    subprocess.run([sys.executable, '-m', 'benchmarks.export_bench',
                    '--workdir', *workdirs, '--rounds', str(rounds),
                    '--batches', *map(str, batches),
                    '--worker_threads', str(t), '--worker_paths',
                    json.dumps(paths), '--worker_out', dest],
                   env=env, check=True)
    with open(dest) as f:
      res[str(t)] = json.load(f)
    os.remove(dest)
  return res


def _versions() -> dict:
  from importlib import metadata
  return {p: metadata.version(p) for p in ('jax', 'jaxlib', 'tensorflow-cpu',
                                           'ai-edge-litert')}


def _ms(r, t, label, rt, b):
  for run in r['latency'][str(t)]['runs']:
    if (run['workdir'], run['runtime'], run['batch']) == (label, rt, b):
      return run['median_s'] * 1e3
  return None


def to_markdown(r: dict) -> str:
  m, threads, batches = r['machine'], r['threads'], r['batches']
  loads = [x for t in threads for x in r['latency'][str(t)]['load_average']]
  lines = [
      f"{m['cpu']}, {m['cores']} cores; load average (1 min) "
      f"{min(loads):.1f}-{max(loads):.1f} during the latency rounds.",
      'Versions: ' + ', '.join(f'{k} {v}' for k, v in r['versions'].items())
      + '.', f"Command: `{r['command']}`", '',
      '| workdir | method | runtime | file bytes | gzip -9 | top-1 | agrees '
      'with jaxcnn | max abs prob diff |', '|---|---|---|---|---|---|---|---|']
  for label, w in r['workdirs'].items():
    acc = w['accuracy']
    for name, row in acc['rows'].items():
      b = w['bytes'].get(name)
      lines.append(
          f"| {label} | {w['method'] or 'plain'} | {name} | "
          f"{f'{b[0]:,} | {b[1]:,}' if b else '- | -'} | "
          f"{100 * row['top1']:.2f}% | " +
          (f"{100 * row['agree_top1']:.2f}% | "
           f"{row['max_abs_prob_diff']:.4f}" if 'agree_top1' in row else
           '- | -') + ' |')
  lines += ['', f"Latency, ms per batch (ms/image), median of "
            f"{r['rounds']} interleaved rounds:", '',
            '| workdir | runtime | batch | ' + ' | '.join(
                f'{t} thread(s)' for t in threads) + ' |',
            '|---|---|---|' + '---|' * len(threads)]
  for run in r['latency'][str(threads[0])]['runs']:
    label, rt, b = run['workdir'], run['runtime'], run['batch']
    cells = [_ms(r, t, label, rt, b) for t in threads]
    lines.append(f'| {label} | {rt} | {b} | ' + ' | '.join(
        f'{s:.3f} ({s / b:.3f})' if s else '-' for s in cells) + ' |')
  t, b = threads[0], batches[0]
  first = next(iter(r['workdirs']))
  base = _ms(r, t, first, 'tflite_none', b)
  lines += ['', f'Deployed summary ({t} thread, batch {b}; speed-up against '
            f'{first} LiteRT fp32; MACs per image as run):', '',
            '| workdir | method | .jxcz bytes | MACs | LiteRT fp32 bytes | '
            'fp32 ms | int8 bytes | int8 ms | fp32 speed-up | int8 speed-up '
            '|', '|---|---|---|---|---|---|---|---|---|---|']
  for label, w in r['workdirs'].items():
    f32, i8 = (_ms(r, t, label, f'tflite_{q}', b) for q in ('none', 'int8'))
    bf, bi = (w['bytes'].get(f'tflite_{q}_b{b}', [None])[0]
              for q in ('none', 'int8'))
    cell = lambda v, fmt: format(v, fmt) if v else '-'  # noqa: E731
    lines.append(
        f"| {label} | {w['method'] or 'plain'} | "
        f"{cell(w['artifact_bytes'], ',')} | {w['macs']:,} | {cell(bf, ',')} "
        f"| {cell(f32, '.3f')} | {cell(bi, ',')} | {cell(i8, '.3f')} | "
        f"{cell(base / f32 if f32 and base else None, '.2f')} | "
        f"{cell(base / i8 if i8 and base else None, '.2f')} |")
  return '\n'.join(lines) + '\n'


def main(argv=None) -> dict | None:
  p = argparse.ArgumentParser(prog='python -m benchmarks.export_bench',
                              description=__doc__.split('\n')[0])
  p.add_argument('--workdir', nargs='+', required=True,
                 help='training and/or compression workdirs; the first is '
                 'the speed-up baseline')
  p.add_argument('--out', default='', help='default: WORKDIR/export (one '
                 'workdir); required for several')
  p.add_argument('--rounds', type=int, default=7)
  p.add_argument('--batches', type=int, nargs='+', default=[1, 32])
  p.add_argument('--threads', type=int, nargs='+', default=[1, 2])
  p.add_argument('--sparse', action='store_true')
  p.add_argument('--calib_images', type=int, default=512)
  # Internal: one latency worker per thread count (see the docstring).
  p.add_argument('--worker_threads', type=int, default=0,
                 help=argparse.SUPPRESS)
  p.add_argument('--worker_paths', default='', help=argparse.SUPPRESS)
  p.add_argument('--worker_out', default='', help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.worker_threads:
    res = worker(a.workdir, json.loads(a.worker_paths), a.worker_threads,
                 a.rounds, a.batches)
    with open(a.worker_out, 'w') as f:
      json.dump(res, f)
    return None
  if len(a.workdir) > 1 and not a.out:
    p.error('--out DIR is required with several workdirs')
  if len(set(map(label_of, a.workdir))) < len(a.workdir):
    p.error('workdirs must have distinct base names (they label the rows)')
  out = a.out or os.path.join(a.workdir[0], 'export')
  os.makedirs(out, exist_ok=True)
  load_start = os.getloadavg()[0]
  paths = export_all(a.workdir, out, a.batches, a.sparse, a.calib_images)
  report = {'workdirs': {}, 'rounds': a.rounds, 'batches': a.batches,
            'threads': a.threads}
  for w in a.workdir:
    label, ref = label_of(w), Reference(w)
    meta = json.load(open(next(iter(paths[label].values())) + '.json'))
    report['workdirs'][label] = {
        'path': os.path.abspath(w), 'method': ref.method,
        'mapping': (meta['compression'] or {}).get('mapping', 'checkpoint'),
        'model': meta['model'], 'dataset': meta['dataset'],
        'weights': meta['weights'], 'artifact_bytes': ref.artifact_bytes,
        'macs': ref.macs,
        'bytes': {k: [os.path.getsize(v),
                      json.load(open(v + '.json'))['gzip_bytes']]
                  for k, v in paths[label].items()},
        'accuracy': accuracy(w, ref, paths[label])}
  report['latency'] = latency(a.workdir, paths, a.rounds, out, a.threads,
                              a.batches)
  report['versions'] = _versions()
  report['command'] = 'python -m benchmarks.export_bench ' + ' '.join(
      argv if argv is not None else sys.argv[1:])
  report['machine'] = {'cpu': machine.cpu_model(machine.read_cpuinfo()),
                       'cores': os.cpu_count(),
                       'load_start': load_start,
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
