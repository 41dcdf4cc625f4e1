"""Training and inference throughput of jaxcnn vs PyTorch and TensorFlow.

  python -m benchmarks.run                       # all models, all frameworks
  python -m benchmarks.run --models cifar10_tutorial,alexnet_cifar --reps 7
  python -m benchmarks.run --precision bfloat16  # GPU: bf16 mixed precision

Per model, every runner (jaxcnn, torch eager, torch.compile, tf, tf+xla, and
jaxcnn variants, e.g. other XLA options, via --jax_variants) is built and
warmed up, then timed INTERLEAVED: each repetition runs `--steps` steps of
every runner in turn, so background load hits all of them alike. Reported
per runner: median and spread (min..max over repetitions) of train and eval
images/sec, ms per step, compile (or first-call) time, memory, and achieved
FLOP/s as a fraction of a matmul measured in the same run; per model the
jaxcnn/reference throughput ratios. With data available
(JAXCNN_DATA_DIR), 'jaxcnn (real data)' runs the same step fed by the train
loop's own prefetching iterator, 'jaxcnn (device data)' the same step with
the train split resident on the device (input.device_data), and their
ratios to synthetic data are reported.
Missing frameworks are skipped with the reason. The device is whatever JAX
(and torch/TF) pick: the same command runs on CPU and GPU.
Writes benchmarks/results/<out>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_MODELS = ('lenet5', 'cifar10_tutorial', 'alexnet_cifar',
              'mobilenet_v2_cifar', 'resnet20_cifar')
ALL_FRAMEWORKS = ('jaxcnn', 'torch', 'torch.compile', 'tf', 'tf+xla')
REFERENCES = ('torch eager', 'torch.compile', 'tf', 'tf+xla')


def _summary(times: list[float], batch: int) -> dict:
  ips = sorted(batch / t for t in times)
  return {'images_per_sec': statistics.median(ips), 'min': ips[0],
          'max': ips[-1], 'ms_per_step': 1e3 * statistics.median(times)}


def _build_runners(model, args, log, configs_dir):
  from benchmarks import jax_bench
  from benchmarks.reference import runners as ref
  config = jax_bench.load_config(model, configs_dir, args.batch,
                                 args.precision)
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
  jr = out[0]
  shape, classes = jr.input_shape, jr.info.num_classes
  model = config.model.name  # the references are named like the registry
  wanted = args.frameworks.split(',')
  specs = [('torch', 'torch eager', lambda: ref.TorchRunner(
               model, shape, classes, args.batch, False, args.precision)),
           ('torch.compile', 'torch.compile', lambda: ref.TorchRunner(
               model, shape, classes, args.batch, True, args.precision)),
           ('tf', 'tf', lambda: ref.TFRunner(
               model, shape, classes, args.batch, False, args.precision)),
           ('tf+xla', 'tf+xla', lambda: ref.TFRunner(
               model, shape, classes, args.batch, True, args.precision))]
  for key, name, make in specs:
    if key not in wanted:
      continue
    why = ref.available('torch' if key.startswith('torch') else 'tf')
    if not why:
      try:
        r = make()
        if r.params != jr.params:
          why = (f'parameter count {r.params:,} != jaxcnn {jr.params:,}: '
                 'not the same model')
        else:
          out.append(r)
      except Exception as e:  # e.g. torch.compile without a C++ compiler
        why = f'{type(e).__name__}: {e}'.splitlines()[0][:200]
    if why:
      skipped[name] = why
      log(f'  skip {name}: {why}')
  return config, out, skipped


def bench_model(model: str, args, log) -> dict:
  config, runners, skipped = _build_runners(model, args, log,
                                            os.path.join(ROOT, 'configs'))
  jr = runners[0]
  timed = [(r.name, r.train, r) for r in runners]
  data_source = None
  if args.real_data:
    try:
      data_source = jr.attach_real_data(args.data_dir or None)
      timed.append(('jaxcnn (real data)', jr.train_real, jr))
    except Exception as e:  # no data here: say so, keep the rest
      skipped['jaxcnn (real data)'] = f'{type(e).__name__}: {e}'[:200]
      log(f"  skip real data: {skipped['jaxcnn (real data)']}")
    try:
      jr.attach_device_data(args.data_dir or None)
      timed.append(('jaxcnn (device data)', jr.train_device_data, jr))
    except Exception as e:
      skipped['jaxcnn (device data)'] = f'{type(e).__name__}: {e}'[:200]
      log(f"  skip device data: {skipped['jaxcnn (device data)']}")
  for name, fn, _ in timed:  # warm-up: first-run allocations, caches
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
  train_flops = 3 * 2 * jr.macs  # backward ~ 2x forward
  rows = {}
  for name, _, r in timed:
    tr = _summary(train_t[name], args.batch)
    row = {'framework': r.framework, 'train': tr,
           'flops_per_sec': tr['images_per_sec'] * train_flops}
    if name in eval_t:
      ev = _summary(eval_t[name], args.batch)
      row.update(eval=ev, eval_flops_per_sec=ev['images_per_sec'] * 2 * jr.macs,
          compile_s=r.compile_s, eval_compile_s=r.eval_compile_s,
          memory_bytes=r.memory_bytes, peak_device_bytes=r.peak_device_bytes(),
          params=r.params,
          xla_flops_per_step=getattr(r, 'xla_flops_per_step', None))
    rows[name] = row
  for r in runners:
    r.close()
  base = rows['jaxcnn']
  ratios = {ref_name: {
      'train': base['train']['images_per_sec']
               / rows[ref_name]['train']['images_per_sec'],
      'eval': base['eval']['images_per_sec']
              / rows[ref_name]['eval']['images_per_sec']}
      for ref_name in rows if ref_name in REFERENCES}
  if 'jaxcnn (real data)' in rows:
    ratios['real_vs_synthetic'] = (
        rows['jaxcnn (real data)']['train']['images_per_sec']
        / base['train']['images_per_sec'])
  if 'jaxcnn (device data)' in rows:
    ratios['device_data_vs_synthetic'] = (
        rows['jaxcnn (device data)']['train']['images_per_sec']
        / base['train']['images_per_sec'])
  from benchmarks import jax_bench
  return {'model': model, 'config': jax_bench.MODEL_CONFIGS[model],
          'input_shape': list(jr.input_shape), 'params': jr.params,
          'macs_per_image': jr.macs, 'rows': rows, 'ratios': ratios,
          'skipped': skipped, 'data_source': data_source,
          'ema': bool(config.ema_decay)}


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


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--models', default=','.join(ALL_MODELS))
  p.add_argument('--frameworks', default=','.join(ALL_FRAMEWORKS),
                 help=f'subset of {",".join(ALL_FRAMEWORKS)}')
  p.add_argument('--jax_variants', default='default',
                 help='jaxcnn variants (benchmarks/jax_bench.VARIANTS), timed '
                 'interleaved, e.g. default,ynnpack,bf16')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--steps', type=int, default=5, help='steps per repetition')
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
  p.add_argument('--out', default='', help='output prefix for .json/.md')
  args = p.parse_args(argv)
  if args.threads == 1 and 'jax' not in sys.modules:
    # XLA:CPU has no thread-count option; this is its one-thread mode.
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               ' --xla_cpu_multi_thread_eigen=false')
  # Several frameworks share one GPU: JAX must not grab 75% of it up front
  # (this also makes its peak-memory figure meaningful).
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  import jax
  if args.threads:
    from benchmarks.reference import runners as ref
    ref.set_threads(args.threads)
  from benchmarks import jax_bench
  for v in args.jax_variants.split(','):
    if v not in jax_bench.VARIANTS:
      p.error(f'unknown --jax_variants {v!r}; valid: '
              f'{", ".join(jax_bench.VARIANTS)}')
  def log(msg):
    print(msg, flush=True)
  dev = jax.devices()[0]
  load_start = os.getloadavg()
  log(f'device {dev.device_kind} ({dev.platform}); load {load_start}')
  # The peak in the dtype the convs run in (GPU fp32 matmuls may use TF32).
  import jax.numpy as jnp
  pdtype = jnp.bfloat16 if args.precision == 'bfloat16' else jnp.float32
  peak = jax_bench.matmul_peak(args.peak_n, pdtype)
  log(f'matmul peak ({args.peak_n}^2 {jnp.dtype(pdtype).name}): '
      f'{peak / 1e9:.1f} GFLOP/s')
  results, peaks = [], [peak]
  for model in args.models.split(','):
    log(f'== {model}')
    r = bench_model(model, args, log)
    # Re-measured after every model: under background load one sample lies.
    peaks.append(jax_bench.matmul_peak(args.peak_n, pdtype))
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


def _write(args, dev, peaks, load_start, results) -> dict:
  """FLOP/s fractions use the best matmul of the run as the peak."""
  for r in results:
    for row in r['rows'].values():
      row['flop_fraction'] = row['flops_per_sec'] / max(peaks)
      if 'eval_flops_per_sec' in row:
        row['eval_flop_fraction'] = row['eval_flops_per_sec'] / max(peaks)
  report = {
      'device': {'platform': dev.platform, 'kind': dev.device_kind},
      'host': f'{platform.machine()}, {os.cpu_count()} CPU cores',
      'versions': _versions(), 'python': sys.version.split()[0],
      'args': vars(args), 'matmul_peak_flops': max(peaks),
      'matmul_peak_flops_samples': peaks,
      'loadavg_start': load_start, 'loadavg_end': os.getloadavg(),
      'time_utc': time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime()),
      'results': results}
  out = args.out or os.path.join(ROOT, 'benchmarks', 'results',
                                 f'frameworks_{dev.platform}')
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + '.json', 'w') as f:
    json.dump(report, f, indent=2)
  with open(out + '.md', 'w') as f:
    f.write(to_markdown(report))
  print(f'wrote {out}.json and {out}.md', flush=True)
  return report


if __name__ == '__main__':
  main()
