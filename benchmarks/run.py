"""Training and inference throughput of jaxcnn vs PyTorch and TensorFlow.

  python -m benchmarks.run                       # all models, all frameworks
  python -m benchmarks.run --models cifar10_tutorial,alexnet_cifar --reps 7
  python -m benchmarks.run --precision bfloat16  # GPU: bf16 mixed precision
  python -m benchmarks.run --in_process          # old, labelled: see below

Default (isolated) mode: per model, each framework runner (jaxcnn with its
variants, torch eager, torch.compile, tf, tf+xla) lives in its OWN worker
process (benchmarks/worker.py) with that framework's default threading, built
and warmed up once; the rounds are INTERLEAVED across the processes: round r
times `--steps` steps in the jaxcnn process, then in the torch process, then
in the TF process, ..., the load average recorded before every round, so
background load hits all of them alike (benchmarks/isolated.py).
--in_process builds and times every runner inside this one Python process,
as the harness used to; there TF and torch run several times slower than in
a process of their own, so its ratios flatter jaxcnn, and its report says
IN-PROCESS.

Reported per runner: median and spread (min..max over rounds) of train and
eval images/sec, ms per step, compile (or first-call) time, memory, and
achieved FLOP/s as a fraction of a matmul measured in the same run (in the
jaxcnn process); per model the jaxcnn/reference throughput ratios (ratio of
medians, and min..max of the per-round ratios). With data available
(JAXCNN_DATA_DIR), 'jaxcnn (real data)' runs the same step fed by the train
loop's own prefetching iterator, 'jaxcnn (device data)' the same step with
the train split resident on the device (input.device_data), and their
ratios to synthetic data are reported.
Missing frameworks are skipped with the reason. The device is whatever JAX
(and torch/TF) pick: the same command runs on CPU and GPU.
Writes benchmarks/results/<out>.json and .md (default frameworks_<platform>,
or frameworks_<platform>_in_process).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

from benchmarks import machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_MODELS = ('lenet5', 'cifar10_tutorial', 'alexnet_cifar',
              'mobilenet_v2_cifar', 'resnet20_cifar')
ALL_FRAMEWORKS = ('jaxcnn', 'torch', 'torch.compile', 'tf', 'tf+xla')
REFERENCES = ('torch eager', 'torch.compile', 'tf', 'tf+xla')
# Settings that change what is measured, recorded with every report.
ENV_KEYS = ('XLA_FLAGS', 'TF_ENABLE_ONEDNN_OPTS', 'OMP_NUM_THREADS',
            'JAX_PLATFORMS', 'CUDA_VISIBLE_DEVICES',
            'XLA_PYTHON_CLIENT_PREALLOCATE')
REF_NAMES = {'torch': 'torch eager', 'torch.compile': 'torch.compile',
             'tf': 'tf', 'tf+xla': 'tf+xla'}


def _summary(times: list[float], batch: int) -> dict:
  ips = sorted(batch / t for t in times)
  return {'images_per_sec': statistics.median(ips), 'min': ips[0],
          'max': ips[-1], 'ms_per_step': 1e3 * statistics.median(times)}


def build_jax(model, args, log):
  """(config, jaxcnn runners: the default first, then --jax_variants,
  skipped {name: why})."""
  from benchmarks import jax_bench
  config = jax_bench.load_config(model, os.path.join(ROOT, 'configs'),
                                 args.batch, args.precision)
  out, skipped = [], {}
  for variant in args.jax_variants.split(','):
    overrides, opts = jax_bench.VARIANTS[variant]
    cfg = config.copy_and_resolve_references()
    for k, v in overrides.items():
      cfg[k] = v
    try:
      out.append(jax_bench.JaxRunner(model, cfg, opts, variant))
    except Exception as e:  # e.g. an XLA option this jaxlib lacks
      if variant == 'default':
        raise
      skipped[f'jaxcnn[{variant}]'] = f'{type(e).__name__}: {e}'[:200]
      log(f"  skip jaxcnn[{variant}]: {skipped[f'jaxcnn[{variant}]']}")
  return config, out, skipped


def build_reference(key, model, shape, classes, params, args):
  """(runner, '') or (None, why) for one --frameworks key other than jaxcnn;
  `model`, `shape`, `classes`, `params` come from the jaxcnn runner."""
  from benchmarks.reference import runners as ref
  why = ref.available('torch' if key.startswith('torch') else 'tf')
  if why:
    return None, why
  make = {'torch': lambda: ref.TorchRunner(model, shape, classes, args.batch,
                                           False, args.precision),
          'torch.compile': lambda: ref.TorchRunner(
              model, shape, classes, args.batch, True, args.precision),
          'tf': lambda: ref.TFRunner(model, shape, classes, args.batch, False,
                                     args.precision),
          'tf+xla': lambda: ref.TFRunner(model, shape, classes, args.batch,
                                         True, args.precision)}[key]
  try:
    r = make()
  except Exception as e:  # e.g. torch.compile without a C++ compiler
    return None, f'{type(e).__name__}: {e}'.splitlines()[0][:200]
  if r.params != params:
    return None, (f'parameter count {r.params:,} != jaxcnn {params:,}: '
                  'not the same model')
  return r, ''


def jax_timed(runners, args, skipped, log):
  """[(name, train fn, runner)]: every jaxcnn runner on its synthetic batch,
  plus the default one fed real data (host iterator, device-resident)."""
  jr = runners[0]
  timed = [(r.name, r.train, r) for r in runners]
  if not args.real_data:
    return timed, None
  data_source = None
  for name, attach, fn in (
      ('jaxcnn (real data)', jr.attach_real_data, jr.train_real),
      ('jaxcnn (device data)', jr.attach_device_data, jr.train_device_data)):
    try:  # no data here: say so, keep the rest
      data_source = attach(args.data_dir or None)
      timed.append((name, fn, jr))
    except Exception as e:
      skipped[name] = f'{type(e).__name__}: {e}'[:200]
      log(f'  skip {name}: {skipped[name]}')
  return timed, data_source


def runner_info(r) -> dict:
  """What a report row needs of a runner besides its timings."""
  return {'framework': r.framework, 'compile_s': r.compile_s,
          'eval_compile_s': r.eval_compile_s,
          'memory_bytes': r.memory_bytes,
          'peak_device_bytes': r.peak_device_bytes(), 'params': r.params,
          'xla_flops_per_step': getattr(r, 'xla_flops_per_step', None)}


def make_rows(train_t, eval_t, info, batch, macs) -> dict:
  """train_t/eval_t: {name: [s/step per round]}; info: {name: runner_info},
  a train-only entry (real/device data) takes its runner's framework."""
  rows = {}
  for name, times in train_t.items():
    tr = _summary(times, batch)
    row = {'framework': info[name]['framework'], 'train': tr,
           'flops_per_sec': tr['images_per_sec'] * 3 * 2 * macs}  # bwd ~2x
    if name in eval_t:
      ev = _summary(eval_t[name], batch)
      row.update(eval=ev, eval_flops_per_sec=ev['images_per_sec'] * 2 * macs,
                 **{k: v for k, v in info[name].items() if k != 'framework'})
    rows[name] = row
  return rows


def make_ratios(rows, train_t, eval_t) -> tuple[dict, dict]:
  """jaxcnn / reference throughput (medians), and the min..max of the same
  ratio taken round by round (both measured within one round). Keyed by the
  reference's name for jaxcnn's default; 'jaxcnn[v] / ref' for a variant."""
  ratios, spread = {}, {}
  variants = [n for n in rows if n == 'jaxcnn' or n.startswith('jaxcnn[')]
  for ours in variants:
    for name in rows:
      if name not in REFERENCES:
        continue
      key = name if ours == 'jaxcnn' else f'{ours} / {name}'
      ratios[key] = {
          phase: rows[ours][phase]['images_per_sec']
                 / rows[name][phase]['images_per_sec']
          for phase in ('train', 'eval')}
      spread[key] = {
          phase: [min(per), max(per)] for phase, t in (('train', train_t),
                                                       ('eval', eval_t))
          for per in [[r / j for j, r in zip(t[ours], t[name])]]}
  base = rows['jaxcnn']
  for name, key in (('jaxcnn (real data)', 'real_vs_synthetic'),
                    ('jaxcnn (device data)', 'device_data_vs_synthetic')):
    if name in rows:
      ratios[key] = (rows[name]['train']['images_per_sec']
                     / base['train']['images_per_sec'])
  return ratios, spread


def bench_model(model: str, args, log) -> dict:
  """--in_process: every framework in this one Python process."""
  config, runners, skipped = build_jax(model, args, log)
  jr = runners[0]
  for key in args.frameworks.split(','):
    if key == 'jaxcnn':
      continue
    r, why = build_reference(key, config.model.name, jr.input_shape,
                             jr.info.num_classes, jr.params, args)
    if r is None:
      skipped[REF_NAMES[key]] = why
      log(f'  skip {REF_NAMES[key]}: {why}')
    else:
      runners.append(r)
  timed, data_source = jax_timed(
      [r for r in runners if r.framework == 'jaxcnn'], args, skipped, log)
  timed += [(r.name, r.train, r) for r in runners if r.framework != 'jaxcnn']
  for _, fn, _ in timed:  # warm-up: first-run allocations, caches
    fn(args.warmup)
  train_t = {name: [] for name, _, _ in timed}
  for _ in range(args.reps):
    for name, fn, _ in timed:
      t = time.perf_counter()
      fn(args.steps)
      train_t[name].append((time.perf_counter() - t) / args.steps)
  eval_t = {r.name: [] for r in runners}
  for r in runners:
    r.eval(args.warmup)
  for _ in range(args.reps):
    for r in runners:
      t = time.perf_counter()
      r.eval(args.steps)
      eval_t[r.name].append((time.perf_counter() - t) / args.steps)
  info = {name: runner_info(r) for name, _, r in timed}
  rows = make_rows(train_t, eval_t, info, args.batch, jr.macs)
  for row in rows.values():
    row['pid'] = os.getpid()
  for r in runners:
    r.close()
  ratios, spread = make_ratios(rows, train_t, eval_t)
  return model_result(model, bool(config.ema_decay), jr.input_shape,
                      jr.params, jr.macs, rows, ratios, spread, skipped,
                      data_source)


def model_result(model, ema, input_shape, params, macs, rows, ratios,
                 spread, skipped, data_source) -> dict:
  from benchmarks import jax_bench
  return {'model': model, 'config': jax_bench.MODEL_CONFIGS[model],
          'input_shape': list(input_shape), 'params': params,
          'macs_per_image': macs, 'rows': rows, 'ratios': ratios,
          'ratio_spread': spread, 'skipped': skipped,
          'data_source': data_source, 'ema': ema}


def _versions() -> dict:
  import importlib.metadata as md
  out = {}
  for pkg in ('jax', 'jaxlib', 'flax', 'torch', 'tensorflow', 'tensorflow-cpu',
              'keras'):
    try:
      out[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      pass
  return out


def to_markdown(report: dict) -> str:
  from benchmarks.report import to_markdown as md
  return md(report)


def _parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--models', default=','.join(ALL_MODELS))
  p.add_argument('--frameworks', default=','.join(ALL_FRAMEWORKS),
                 help=f'subset of {",".join(ALL_FRAMEWORKS)}')
  p.add_argument('--jax_variants', default='default',
                 help='jaxcnn variants (benchmarks/jax_bench.VARIANTS), timed '
                 'interleaved in the jaxcnn process, e.g. default,ynnpack,bf16')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--reps', type=int, default=5, help='interleaved rounds')
  p.add_argument('--steps', type=int, default=5, help='steps per round')
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--precision', default='', choices=('', 'float32',
                                                     'bfloat16'),
                 help="'' keeps each config's precision")
  p.add_argument('--real_data', type=int, default=1,
                 help='also time the real input pipeline (needs the data)')
  p.add_argument('--data_dir', default='')
  p.add_argument('--threads', type=int, default=0,
                 help='CPU threads of every framework (0: their defaults); '
                 '1 also makes XLA:CPU single-threaded')
  p.add_argument('--peak_n', type=int, default=2048,
                 help='size of the square matmul that measures the peak')
  p.add_argument('--in_process', action='store_true',
                 help='the old mode: every framework in this one process. '
                 'TF and torch run several times slower there than in a '
                 'process of their own, so its ratios flatter jaxcnn; the '
                 'report is labelled IN-PROCESS')
  p.add_argument('--out', default='', help='output prefix for .json/.md')
  return p


def main(argv=None) -> dict:
  p = _parser()
  args = p.parse_args(argv)
  for k in args.frameworks.split(','):
    if k not in ALL_FRAMEWORKS:
      p.error(f'unknown --frameworks {k!r}; valid: {",".join(ALL_FRAMEWORKS)}')
  # Several frameworks may share one GPU: JAX must not grab 75% of it up
  # front (this also makes its peak-memory figure meaningful). Inherited by
  # the worker processes.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  if args.threads == 1:
    # XLA:CPU has no thread-count option; this is its one-thread mode.
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               ' --xla_cpu_multi_thread_eigen=false')
  from benchmarks import jax_bench
  for v in args.jax_variants.split(','):
    if v not in jax_bench.VARIANTS:
      p.error(f'unknown --jax_variants {v!r}; valid: '
              f'{", ".join(jax_bench.VARIANTS)}')
  def log(msg):
    print(msg, flush=True)
  load_start = os.getloadavg()
  log(f"mode: {'IN-PROCESS' if args.in_process else 'isolated'}; "
      f'load {load_start}')
  results, peaks, report = [], [], None
  if args.in_process:
    bench, dev = _in_process_bench(args, log, peaks)
  else:
    from benchmarks import isolated
    bench, dev = functools.partial(isolated.bench_model, peaks=peaks), None
  for model in args.models.split(','):
    log(f'== {model}')
    r = bench(model, args, log)
    d = r.pop('device', None)  # isolated: what the jaxcnn worker saw
    dev = dev or d
    for name, row in r['rows'].items():
      ev = row.get('eval', {}).get('images_per_sec')
      log(f"  {name:20s} train {row['train']['images_per_sec']:8.1f} img/s"
          + (f', eval {ev:8.1f} img/s' if ev else ''))
    log(f"  ratios: {json.dumps(r['ratios'])}")
    results.append(r)
    # Written after every model, so a long run interrupted keeps its rows.
    report = _write(args, dev, peaks, load_start, results)
  print(to_markdown(report))
  return report


def _in_process_bench(args, log, peaks):
  """bench_model in this process, the matmul peak re-measured after every
  model (under background load one sample lies)."""
  import jax
  import jax.numpy as jnp
  from benchmarks import jax_bench
  if args.threads:
    from benchmarks.reference import runners as ref
    ref.set_threads(args.threads)
  d = jax.devices()[0]
  dev = {'platform': d.platform, 'kind': d.device_kind}
  # The peak in the dtype the convs run in (GPU fp32 matmuls may use TF32).
  pdtype = jnp.bfloat16 if args.precision == 'bfloat16' else jnp.float32
  peaks.append(jax_bench.matmul_peak(args.peak_n, pdtype))
  log(f"device {dev['kind']} ({dev['platform']}); matmul peak "
      f'{peaks[0] / 1e9:.1f} GFLOP/s')

  def bench(model, args, log):
    r = bench_model(model, args, log)
    peaks.append(jax_bench.matmul_peak(args.peak_n, pdtype))
    return r
  return bench, dev


def _write(args, dev, peaks, load_start, results) -> dict:
  """FLOP/s fractions use the best matmul of the run as the peak."""
  for r in results:
    for row in r['rows'].values():
      row['flop_fraction'] = row['flops_per_sec'] / max(peaks)
      if 'eval_flops_per_sec' in row:
        row['eval_flop_fraction'] = row['eval_flops_per_sec'] / max(peaks)
  report = {
      'mode': 'in_process' if args.in_process else 'isolated',
      'parent_pid': os.getpid(),
      'device': dev,
      'host': machine.describe(),
      'versions': _versions(), 'python': sys.version.split()[0],
      'args': vars(args), 'matmul_peak_flops': max(peaks),
      'matmul_peak_flops_samples': peaks,
      'loadavg_start': load_start, 'loadavg_end': os.getloadavg(),
      'env': {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
      'time_utc': time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime()),
      'results': results}
  # The in-process figures never overwrite the isolated ones.
  out = args.out or os.path.join(
      ROOT, 'benchmarks', 'results', f"frameworks_{dev['platform']}"
      + ('_in_process' if args.in_process else ''))
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + '.json', 'w') as f:
    json.dump(report, f, indent=2)
  with open(out + '.md', 'w') as f:
    f.write(to_markdown(report))
  print(f'wrote {out}.json and {out}.md', flush=True)
  return report


if __name__ == '__main__':
  main()
