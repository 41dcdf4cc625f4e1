"""CPU per-op timings behind docs/performance.md (issue 18), interleaved.

  python -m benchmarks.cpu_ops conv   # forward / input grad / filter grad
  python -m benchmarks.cpu_ops lrn    # LRN forward + backward, each impl
  python -m benchmarks.cpu_ops pool   # max-pool after bias + ReLU, each impl
  python -m benchmarks.cpu_ops conv --impls onednn_bf16 --reps 10

Each op is jitted and compiled with the train step's CPU options
(jaxcnn/ops/cpu_options.py), host memory is kept as the CLI keeps it
(jaxcnn/hostmem.py), and every variant of a shape runs once per round,
rounds interleaved. Prints the median milliseconds per call.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from jaxcnn import hostmem

_HOSTMEM = hostmem.keep_freed_memory()  # before any thread allocates

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxcnn.ops import conv as conv_ops  # noqa: E402
from jaxcnn.ops import cpu_options, pooling  # noqa: E402
from jaxcnn.ops.lrn import lrn as lrn_op  # noqa: E402

OPTS = cpu_options.train_compiler_options('cpu', 'onednn')
DN = ('NHWC', 'HWIO', 'NHWC')
CONV_SHAPES = ((128, 16, 16, 64, 192, 5), (128, 8, 8, 192, 384, 3),
               (128, 8, 8, 384, 256, 3), (128, 8, 8, 256, 256, 3),
               (128, 12, 12, 64, 64, 5), (128, 24, 24, 3, 64, 5))
LRN_SHAPES = (((128, 16, 16, 192), 2), ((128, 32, 32, 64), 2),
              ((128, 24, 24, 64), 4), ((128, 12, 12, 64), 4))
POOL_SHAPES = (((128, 24, 24, 64), 'SAME'), ((128, 12, 12, 64), 'SAME'),
               ((128, 32, 32, 64), 'VALID'), ((128, 16, 16, 192), 'VALID'),
               ((1000, 24, 24, 64), 'SAME'))  # the CLI's eval batch


def _time(fns: dict, reps: int) -> dict:
  """Median seconds per call of each (fn, args), rounds interleaved."""
  for f, a in fns.values():
    jax.block_until_ready(f(*a))
  times = {k: [] for k in fns}
  for _ in range(reps):
    for k, (f, a) in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(f(*a))
      times[k].append(time.perf_counter() - t)
  return {k: statistics.median(v) for k, v in times.items()}


def _compile(f, *args):
  return jax.jit(f).lower(*args).compile(OPTS)


def _conv_fns(impl, x, w, dy):
  op = conv_ops.conv_fn(impl)
  conv = lambda x, w: op(x, w, (1, 1), 'SAME', dimension_numbers=DN)  # noqa: E731
  return {
      (impl, 'fwd'): (_compile(conv, x, w), (x, w)),
      (impl, 'dx'): (_compile(lambda x, w, dy: jax.vjp(
          lambda v: conv(v, w), x)[1](dy)[0], x, w, dy), (x, w, dy)),
      (impl, 'dw'): (_compile(lambda x, w, dy: jax.vjp(
          lambda v: conv(x, v), w)[1](dy)[0], x, w, dy), (x, w, dy))}


def conv(impls, reps):
  for n, h, w_, c, o, k in CONV_SHAPES:
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (n, h, w_, c))
    w = jax.random.normal(keys[1], (k, k, c, o)) * 0.05
    dy = jax.random.normal(keys[2], (n, h, w_, o))
    fns = {}
    for impl in impls:
      fns.update(_conv_fns(impl, x, w, dy))
    t = _time(fns, reps)
    print(f'conv {n}x{h}x{w_} {c}->{o} k{k}: ' + ' '.join(
        f'{i}:{kind}={1e3 * s:.1f}' for (i, kind), s in t.items()), flush=True)


def lrn_impls(impls, reps):
  for shape, r in LRN_SHAPES:
    x = 3 * jax.random.normal(jax.random.key(0), shape)
    g = jax.random.normal(jax.random.key(1), shape)
    fns = {}
    for impl in impls:
      def step(x, g, impl=impl):
        y, pull = jax.vjp(lambda v: lrn_op(v, r, 2.0, 1e-4, 0.75, impl=impl),
                          x)
        return y, pull(g)[0]
      fns[impl] = (_compile(step, x, g), (x, g))
    t = _time(fns, reps)
    print(f'lrn {"x".join(map(str, shape))} r={r}: ' + ' '.join(
        f'{i}={1e3 * s:.2f}' for i, s in t.items()), flush=True)


def _train_eval(fns: dict, name: str, fwd, x, b) -> None:
  loss = lambda x, b: jnp.sum(fwd(x, b) ** 2)  # noqa: E731
  fns[f'{name} train'] = (_compile(jax.grad(loss, (0, 1)), x, b), (x, b))
  fns[f'{name} eval'] = (_compile(fwd, x, b), (x, b))


def pool(reps):
  """jaxcnn's max_pool (tap walk, C++ kernel) against flax's (XLA's
  reduce-window, select-and-scatter gradient), after bias + ReLU as in the
  nets: 'train' is forward + backward, 'eval' the forward alone.
  'native_after' is relu(pool(x) + b), the same floats (max commutes with
  +b and ReLU): what moving a conv's bias and ReLU past its pool would save
  (measured, not used: docs/performance.md)."""
  for shape, pad in POOL_SHAPES:
    x = jax.random.normal(jax.random.key(0), shape)
    b = jax.random.normal(jax.random.key(1), shape[-1:])
    fns = {}
    for name, p in (
        ('taps', lambda a: pooling.max_pool(a, (3, 3), (2, 2), pad)),
        ('native', lambda a: pooling.max_pool(a, (3, 3), (2, 2), pad,
                                              impl='native')),
        ('flax', lambda a: nn.max_pool(a, (3, 3), (2, 2), pad))):
      fwd = lambda x, b, p=p: p(jax.nn.relu(x + b))  # noqa: E731
      _train_eval(fns, name, fwd, x, b)
    # Bias and ReLU after the pool (cifar10_tutorial's conv1 beside oneDNN).
    after = lambda x, b: jax.nn.relu(  # noqa: E731
        pooling.max_pool(x, (3, 3), (2, 2), pad, impl='native') + b)
    _train_eval(fns, 'native_after', after, x, b)
    t = _time(fns, reps)
    print(f'pool {"x".join(map(str, shape))} {pad}: ' + ' '.join(
        f'{i.replace(" ", "_")}={1e3 * s:.2f}' for i, s in t.items()),
          flush=True)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('what', choices=('conv', 'lrn', 'pool'))
  p.add_argument('--impls', default='',
                 help='conv: ops/conv.IMPLS (default onednn,onednn_bf16); '
                      'lrn: impls of ops/lrn (default matmul,reduce_window,'
                      'native)')
  p.add_argument('--reps', type=int, default=6)
  a = p.parse_args(argv)
  print(f'host memory: {_HOSTMEM}; load {os.getloadavg()[0]:.1f}')
  if a.what == 'conv':
    conv((a.impls or 'onednn,onednn_bf16').split(','), a.reps)
  elif a.what == 'lrn':
    lrn_impls((a.impls or 'matmul,reduce_window,native').split(','), a.reps)
  else:
    pool(a.reps)


if __name__ == '__main__':
  main()
