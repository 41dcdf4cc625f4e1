"""What TensorBoard summaries cost: the ordinary train step vs summary_step.

  python -m benchmarks.summary_cost [--config configs/cifar10_tutorial.py]
      [--batch 128] [--steps 20] [--reps 5] [--every 1950] [--out DIR]

Synthetic uint8 batches of the config's dataset shape (no data loading), the
run's real train step (train.make_train_fn) and summary step
(summaries.make_summary_fn). Reported, best of `reps`:
  train_ms        one train step (mean over `steps` back-to-back steps)
  summary_ms      one summary_step, device -> host transfer included
  write_ms        writing its output to event files (jaxcnn/events.py)
  overhead_pct    (summary_ms + write_ms) / (every * train_ms), i.e. the
                  slow-down of a run with summary_every_steps = every
  compile_s       first call of each (compile + run)
Prints a JSON line and writes summary_cost_<device>.json to --out.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time

import jax
import numpy as np


def load_config(path: str, batch: int):
  spec = importlib.util.spec_from_file_location('_bench_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.batch_size = batch
  return c


def best_of(reps: int, fn) -> float:
  best = float('inf')
  for _ in range(reps):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--config', default='configs/cifar10_tutorial.py')
  ap.add_argument('--batch', type=int, default=128)
  ap.add_argument('--steps', type=int, default=20)
  ap.add_argument('--reps', type=int, default=5)
  ap.add_argument('--every', type=int, default=1950)
  ap.add_argument('--out', default='benchmarks/results')
  args = ap.parse_args(argv)

  from jaxcnn import experiment, parallel, summaries, train
  from jaxcnn.data import datasets, pipeline
  from jaxcnn.metrics import make_writer
  from jaxcnn.ops import cpu_options
  c = load_config(args.config, args.batch)
  mesh = parallel.make_mesh(c.mesh.model)
  # The conv library a run would use here (oneDNN on one CPU device).
  model = experiment.build_model(c, cpu_options.model_conv(c.xla_cpu_conv,
                                                           mesh))
  plan = experiment.Plan(390, 100_000)
  tx, schedule = experiment.make_optimizer(c, model, plan)
  state = experiment.init_state(c, model, tx, mesh)
  sharding = jax.tree.map(lambda x: x.sharding, state)
  train_fn = train.make_train_fn(model, tx, schedule, c, state.params, mesh,
                                 sharding)
  summary_fn = summaries.make_summary_fn(c, model, state.params, mesh,
                                         sharding)
  info = datasets.get_info(c.dataset.name)
  rng = np.random.default_rng(0)
  batch = pipeline.put_global(
      {'image': rng.integers(0, 256, (args.batch, *info.image_shape),
                             dtype=np.uint8),
       'label': rng.integers(0, info.num_classes, (args.batch,),
                             dtype=np.int32)},
      parallel.data_sharding(mesh))

  t0 = time.perf_counter()
  state, m = train_fn(state, batch)
  jax.block_until_ready(m)
  compile_train = time.perf_counter() - t0
  t0 = time.perf_counter()
  host = jax.device_get(summary_fn(state, batch))
  compile_summary = time.perf_counter() - t0

  def run_steps():
    nonlocal state
    for _ in range(args.steps):
      state, out = train_fn(state, batch)
    jax.block_until_ready(out)
  train_s = best_of(args.reps, run_steps) / args.steps
  summary_s = best_of(args.reps,
                      lambda: jax.device_get(summary_fn(state, batch)))
  with tempfile.TemporaryDirectory() as d:
    writer = make_writer(d, True)
    step = iter(range(1, 10**6))
    write_s = best_of(args.reps,
                      lambda: summaries.write(writer, next(step), host))
    writer.close()
  device = jax.devices()[0]
  result = {
      'config': args.config, 'batch': args.batch, 'device': device.device_kind,
      'num_devices': jax.device_count(), 'jax': jax.__version__,
      'train_ms': 1e3 * train_s, 'summary_ms': 1e3 * summary_s,
      'write_ms': 1e3 * write_s, 'every': args.every,
      'overhead_pct': 100 * (summary_s + write_s) / (args.every * train_s),
      'summary_over_train': summary_s / train_s,
      'compile_s': {'train': compile_train, 'summary': compile_summary},
      'num_histograms': len(host['hists']),
      'num_scalars': len(host['scalars']),
  }
  print(json.dumps(result))
  os.makedirs(args.out, exist_ok=True)
  kind = device.platform if device.platform == 'cpu' else \
      device.device_kind.replace(' ', '_').lower()
  path = os.path.join(args.out, f'summary_cost_{kind}.json')
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)
  print('wrote', path)
  return result


if __name__ == '__main__':
  main()
