"""Where a train step's time goes: a jax.profiler trace of jaxcnn's real train
step (benchmarks/jax_bench.JaxRunner), summed per XLA operation.

  python -m benchmarks.profile_step --model cifar10_tutorial
  python -m benchmarks.profile_step --model alexnet_cifar --threads 1 --top 30
  python -m benchmarks.profile_step --model cifar10_tutorial --eval  # eval step
  python -m benchmarks.profile_step --model cifar10_tutorial --conv onednn_bf16

--threads 1 makes XLA:CPU single-threaded, so each op's time is its own work
rather than a thread pool's waits (steadier on a shared machine). The trace
is kept under --trace_dir for TensorBoard's profile plugin. Op names are the
compiled HLO's (e.g. `convolution.2`); `--hlo FILE` writes the optimised HLO
text so they can be looked up.
"""
from __future__ import annotations

import argparse
import collections
import glob
import importlib
import os
import re
import sys
import tempfile
import time

from jaxcnn import hostmem  # no jax: XLA_FLAGS are set in main


def op_times(trace_dir: str) -> collections.Counter:
  """Total picoseconds per XLA op name in the newest xplane under trace_dir.

  Host-side executor/python events are skipped: only the lines XLA's CPU
  client and its Eigen pool write, where each event is one thunk (op).
  """
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # TF is a dependency
  files = sorted(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'),
                           recursive=True), key=os.path.getmtime)
  if not files:
    raise FileNotFoundError(f'no *.xplane.pb under {trace_dir}')
  space = xplane_pb2.XSpace()
  with open(files[-1], 'rb') as f:
    space.ParseFromString(f.read())
  total = collections.Counter()
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if not line.name.startswith('tf_XLA'):
        continue
      for ev in line.events:
        name = names.get(ev.metadata_id, '?')
        if 'ThunkExecutor' in name or name.startswith('end: '):
          continue
        total[name] += ev.duration_ps
  return total


def custom_call_targets(hlo_text: str) -> dict[str, str]:
  """HLO op name -> custom-call target (oneDNN convs show as ffi_call.N)."""
  found = re.findall(r'%(\S+) = .*custom_call_target="([^"]+)"', hlo_text)
  return dict(found)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='cifar10_tutorial',
                 help='a config in configs/ (its model, batch and optimizer)')
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--threads', type=int, default=0,
                 help='1: single-threaded XLA:CPU; 0: its default')
  p.add_argument('--top', type=int, default=25)
  p.add_argument('--trace_dir', default='')
  p.add_argument('--hlo', default='', help='write the optimised HLO here')
  p.add_argument('--conv', default='',
                 help="override the config's xla_cpu_conv (e.g. onednn_bf16)")
  p.add_argument('--eval', action='store_true',
                 help='profile the eval step (compiled as evaluate.py does, '
                      'with XLA\'s default CPU options) instead')
  a = p.parse_args(argv)
  if a.threads == 1:
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                               + ' --xla_cpu_multi_thread_eigen=false')
  hostmem.keep_freed_memory()  # as the CLI: no per-step page faults
  import jax  # after XLA_FLAGS
  from benchmarks import jax_bench
  from jaxcnn.ops import cpu_options
  try:
    config = importlib.import_module(f'configs.{a.model}').get_config()
  except ModuleNotFoundError:
    print(f'error: no config configs/{a.model}.py', file=sys.stderr)
    return 2
  if a.conv:
    config.xla_cpu_conv = a.conv
  opts = None if a.eval else cpu_options.train_compiler_options(
      jax.default_backend(), config.xla_cpu_conv)
  runner = jax_bench.JaxRunner(a.model, config, compiler_options=opts)
  if a.hlo:
    with open(a.hlo, 'w') as f:
      f.write((runner._eval if a.eval else runner._train).as_text())
  compiled = runner._eval if a.eval else runner._train
  targets = custom_call_targets(compiled.as_text())
  step = runner.eval if a.eval else runner.train
  step(2)  # warm-up
  trace_dir = a.trace_dir or tempfile.mkdtemp(prefix='jaxcnn-profile-')
  start = time.perf_counter()
  with jax.profiler.trace(trace_dir):
    step(a.steps)
  wall = (time.perf_counter() - start) / a.steps
  total = op_times(trace_dir)
  step_ps = sum(total.values()) / a.steps
  print(f'{a.model} {"eval" if a.eval else "train"} step on '
        f'{jax.devices()[0].device_kind}, batch '
        f'{config.batch_size}: {wall * 1e3:.1f} ms/step wall (under the '
        f'profiler), {step_ps / 1e9:.1f} ms/step of op time summed over '
        f'threads; trace in {trace_dir}')
  print(f'{"ms/step":>9} {"share":>6}  op')
  for name, ps in total.most_common(a.top):
    label = f' ({targets[name]})' if name in targets else ''
    print(f'{ps / a.steps / 1e9:9.2f} {100 * ps / a.steps / step_ps:5.1f}%  '
          f'{name}{label}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
