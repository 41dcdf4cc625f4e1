"""Would running a conv's two gradients concurrently pay off? (issue 18)

  python -m benchmarks.conv_overlap              # both cores
  python -m benchmarks.conv_overlap --one_core   # pinned to CPU 0

TensorFlow runs a convolution's input and filter gradients at the same time,
one thread each; XLA runs jaxcnn's oneDNN calls one after another, each on
both cores. benchmarks/native/conv_overlap.cc times oneDNN's two backward
primitives (float32, NHWC, batch 128, AlexNet-CIFAR's shapes) alone, one
after the other, and concurrently from two threads. Pinned to one core the
same primitives show the library's parallel efficiency: a one-core time of
twice the two-core time leaves nothing for overlap to win.
"""
from __future__ import annotations

import argparse
import ctypes
import os

from jaxcnn.ops import dnnl_build

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'native',
                      'conv_overlap.cc')
# (H = W, in channels, out channels, kernel): AlexNet-CIFAR's convs 2-5.
SHAPES = ((16, 64, 192, 5), (8, 192, 384, 3), (8, 384, 256, 3),
          (8, 256, 256, 3))


def _load() -> ctypes.CDLL:
  return ctypes.CDLL(dnnl_build.build_linked('conv_overlap', SOURCE))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--one_core', action='store_true',
                      help='pin the process to CPU 0 before oneDNN starts')
  parser.add_argument('--reps', type=int, default=7)
  a = parser.parse_args()
  if a.one_core:  # before TBB reads the affinity mask
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  lib = _load()
  out = (ctypes.c_double * 4)()
  cores = len(os.sched_getaffinity(0))
  print(f'{cores} core(s); median ms of {a.reps} rounds, float32, batch 128')
  print('| conv (HxW, in->out, k) | input grad | filter grad | '
        'one after the other | concurrent | concurrent / sequential |')
  print('|---|---:|---:|---:|---:|---:|')
  for h, c, o, k in SHAPES:
    if lib.jaxcnn_conv_overlap(h, c, o, k, a.reps, out):
      raise RuntimeError(f'oneDNN failed on {h}x{h} {c}->{o} k{k}')
    print(f'| {h}x{h}, {c}->{o}, {k} | {out[0]:.1f} | {out[1]:.1f} | '
          f'{out[2]:.1f} | {out[3]:.1f} | {out[3] / out[2]:.2f} |')


if __name__ == '__main__':
  main()
