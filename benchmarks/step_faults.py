"""Train/eval step throughput and page faults per step, in this process.

  python -m benchmarks.step_faults --model cifar10_tutorial
  python -m benchmarks.step_faults --model cifar10_tutorial --conv eigen
  JAXCNN_HOST_MALLOC=default python -m benchmarks.step_faults  # glibc default

jaxcnn's real train and eval steps (benchmarks/jax_bench.JaxRunner, the
conv library from config.xla_cpu_conv or --conv), `--reps` rounds of
`--steps` steps each, median and range of images/s, and the minor page
faults per train step (`resource.getrusage`): the number jaxcnn/hostmem.py
brings to zero. Host memory is kept as the CLI keeps it unless
JAXCNN_HOST_MALLOC=default. One process, one configuration: for ratios,
run the variants one after the other on a quiet machine, more than once.
"""
from __future__ import annotations

import argparse
import importlib
import os
import resource
import sys
import time

from jaxcnn import hostmem


def _faults() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main(argv=None) -> int:
  malloc = hostmem.keep_freed_memory()  # first, as the CLI does
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='cifar10_tutorial', help='configs/<name>.py')
  p.add_argument('--conv', default='', help='override config.xla_cpu_conv')
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--steps', type=int, default=5)
  a = p.parse_args(argv)
  import numpy as np  # pylint: disable=import-outside-toplevel
  from benchmarks import jax_bench  # pylint: disable=import-outside-toplevel
  config = importlib.import_module(f'configs.{a.model}').get_config()
  if a.conv:
    config.xla_cpu_conv = a.conv
  runner = jax_bench.JaxRunner(a.model, config)  # CLI's compile options
  runner.train(2)
  runner.eval(2)
  train, evals, faults = [], [], []
  b = config.batch_size
  for _ in range(a.reps):
    f0, t0 = _faults(), time.perf_counter()
    runner.train(a.steps)
    train.append(a.steps * b / (time.perf_counter() - t0))
    faults.append((_faults() - f0) / a.steps)
    t0 = time.perf_counter()
    runner.eval(a.steps)
    evals.append(a.steps * b / (time.perf_counter() - t0))
  print(f'{a.model}, xla_cpu_conv={config.xla_cpu_conv}, host malloc: {malloc}')
  print(f'train img/s {np.median(train):.0f} ({min(train):.0f}..{max(train):.0f}); '
        f'eval img/s {np.median(evals):.0f} ({min(evals):.0f}..{max(evals):.0f}); '
        f'minor page faults per train step {np.median(faults):.0f}; '
        f'load {os.getloadavg()[0]:.2f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
