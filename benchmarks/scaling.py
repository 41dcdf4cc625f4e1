"""Data-parallel scaling report: images/sec of the real train step on 1, 2, 4
and 8 devices, and the scaling efficiency.

  python -m benchmarks.scaling --config configs/cifar10_tutorial.py
  python -m benchmarks.scaling --config configs/alexnet_imagenet.py:two_tower \
      --per_device_batch 8 --devices 2,4,8

Weak scaling by default (the global batch grows with the device count, like
the tutorial's towers: 2 GPUs x 64 vs 1 x 128 is --mode strong). Efficiency
is images/sec on n devices / (n x images/sec on the smallest count run).
Images are synthetic uint8 in the dataset's stored shape, put on the devices
once, so the figure is compute + collectives, not the host pipeline.

On a machine without accelerators, --cpu_devices 8 (default there) splits
the CPU into 8 fake XLA devices that share the same cores: the numbers then
show the overhead of the sharded program, not a speed-up.
Writes <out>.json and <out>.md (default benchmarks/results/scaling_<kind>).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(spec: str):
  from jaxcnn.config_base import load_sibling
  path, _, arg = spec.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return load_sibling(os.path.abspath(path), name, arg or None)


def measure(config, devices, global_batch: int, steps: int, warmup: int,
            seed: int = 0) -> dict:
  """One row: throughput of make_train_fn's step on a mesh over `devices`."""
  import jax
  import numpy as np
  from jaxcnn import experiment, parallel, train
  from jaxcnn.data import datasets, pipeline
  mesh = parallel.make_mesh(config.mesh.model, devices)
  parallel.check_global_batch(global_batch, mesh)
  config.batch_size = global_batch
  model = experiment.build_model(config)
  tx, schedule = experiment.make_optimizer(config, model,
                                           experiment.Plan(1000, 10**6))
  state = experiment.init_state(config, model, tx, mesh)
  sharding = jax.tree.map(lambda x: x.sharding, state)
  fn = train.make_train_fn(model, tx, schedule, config, state.params, mesh,
                           sharding)
  info = datasets.get_info(config.dataset.name)
  rng = np.random.default_rng(seed)
  # Each process supplies its rows only (multi-host safe).
  local = global_batch // jax.process_count()
  batch = pipeline.put_global(
      {'image': rng.integers(0, 256, (local, *info.image_shape), np.uint8),
       'label': rng.integers(0, info.num_classes, (local,), np.int32)},
      parallel.data_sharding(mesh))
  t = time.perf_counter()
  step = fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - t
  mem = step.memory_analysis()
  for _ in range(max(warmup, 1)):  # at least one: first-run allocations
    state, m = step(state, batch)
  jax.block_until_ready(m)
  t = time.perf_counter()
  for _ in range(steps):
    state, m = step(state, batch)
  jax.block_until_ready((state, m))
  sec = (time.perf_counter() - t) / steps
  per_device = parallel.bytes_per_device(state)
  return {
      'devices': len(devices), 'mesh': dict(mesh.shape),
      'global_batch': global_batch, 'sec_per_step': sec,
      'images_per_sec': global_batch / sec, 'compile_sec': compile_s,
      'state_bytes_per_device': max(per_device.values()),
      'temp_bytes_per_device': getattr(mem, 'temp_size_in_bytes', None),
      'loss': float(m['loss'])}


def run(config_spec: str, device_counts, per_device_batch: int, steps: int,
        warmup: int, mode: str = 'weak', global_batch: int = 0) -> dict:
  import jax
  rows = []
  for n in device_counts:
    if n > jax.device_count():
      print(f'skip {n} devices: only {jax.device_count()}', flush=True)
      continue
    config = load_config(config_spec)
    if n % config.mesh.model:
      print(f'skip {n} devices: mesh.model={config.mesh.model}', flush=True)
      continue
    batch = per_device_batch * n if mode == 'weak' else (
        global_batch or per_device_batch * max(device_counts))
    row = measure(config, jax.devices()[:n], batch, steps, warmup)
    rows.append(row)
    print(f"{n} devices {row['mesh']}: {row['images_per_sec']:.1f} images/s "
          f"(batch {batch}, {row['sec_per_step'] * 1e3:.1f} ms/step, compile "
          f"{row['compile_sec']:.1f} s)", flush=True)
  if rows:
    base = rows[0]
    for r in rows:
      per_dev = r['images_per_sec'] / r['devices']
      r['efficiency'] = per_dev / (base['images_per_sec'] / base['devices'])
  d = jax.devices()[0]
  return {
      'config': config_spec, 'mode': mode,
      'per_device_batch': per_device_batch, 'steps': steps, 'warmup': warmup,
      'platform': d.platform, 'device_kind': d.device_kind,
      'fake_cpu_devices': d.platform == 'cpu' and jax.device_count() > 1,
      'host': f'{platform.machine()}, {os.cpu_count()} CPU cores',
      'jax': jax.__version__, 'rows': rows}


def to_markdown(report: dict) -> str:
  lines = [
      f"Config `{report['config']}`, {report['mode']} scaling, "
      f"{report['device_kind']} ({report['platform']}"
      + (', fake devices sharing the same cores' if report['fake_cpu_devices']
         else '') + f"), {report['host']}, jax {report['jax']}.", '',
      '| devices | mesh (data x model) | global batch | images/sec | '
      'ms/step | efficiency | state MB/device | XLA temp MB/device |',
      '|---|---|---|---|---|---|---|---|']
  for r in report['rows']:
    m, temp = r['mesh'], r['temp_bytes_per_device']
    lines.append(
        f"| {r['devices']} | {m['data']} x {m['model']} | "
        f"{r['global_batch']} | {r['images_per_sec']:.1f} | "
        f"{r['sec_per_step'] * 1e3:.1f} | {r['efficiency']:.2f} | "
        f"{r['state_bytes_per_device'] / 2**20:.1f} | "
        + ('n/a' if temp is None else f'{temp / 2**20:.1f}') + ' |')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default='configs/cifar10_tutorial.py')
  p.add_argument('--devices', default='1,2,4,8')
  p.add_argument('--per_device_batch', type=int, default=32)
  p.add_argument('--mode', choices=('weak', 'strong'), default='weak')
  p.add_argument('--global_batch', type=int, default=0,
                 help='strong mode: fixed global batch (default: '
                 'per_device_batch x the largest device count)')
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--cpu_devices', type=int, default=-1,
                 help='fake CPU devices (XLA flag); -1: 8 when no GPU/TPU '
                 'is visible, 0: leave XLA alone')
  p.add_argument('--out', default='', help='output prefix for .json/.md')
  args = p.parse_args(argv)
  counts = [int(x) for x in args.devices.split(',')]
  if args.cpu_devices and 'jax' not in sys.modules:
    # Must be set before JAX starts; harmless when a GPU/TPU backend is used.
    n = args.cpu_devices if args.cpu_devices > 0 else max(counts)
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               f' --xla_force_host_platform_device_count={n}')
  import jax
  from jaxcnn import parallel
  from jaxcnn.config_base import base_config
  parallel.maybe_initialize_distributed(base_config().distributed)
  report = run(args.config, counts, args.per_device_batch, args.steps,
               args.warmup, args.mode, args.global_batch)
  md = to_markdown(report)
  print(md)
  if jax.process_index() == 0:
    out = args.out or os.path.join(ROOT, 'benchmarks', 'results',
                                   f"scaling_{report['platform']}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + '.json', 'w') as f:
      json.dump(report, f, indent=2)
    with open(out + '.md', 'w') as f:
      f.write(md)
    print(f'wrote {out}.json and {out}.md')
  return report


if __name__ == '__main__':
  main()
