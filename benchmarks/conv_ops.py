"""Per-convolution timings on XLA:CPU: forward, input and filter gradient,
each with the convolution library options of jaxcnn/ops/cpu_options.py and
with hand-written filter-gradient formulations, all timed interleaved.

  python -m benchmarks.conv_ops                  # conv2 of the tutorial net
  python -m benchmarks.conv_ops --shape 128,16,16,64,192,5   # alexnet conv2

Prints median / best milliseconds and GFLOP/s (2 * MACs of one conv).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax

_DN = ('NHWC', 'HWIO', 'NHWC')
OPTIONS = {
    'ynnpack': {},  # jaxlib 0.10.2's default
    'eigen': {'xla_cpu_experimental_ynn_fusion_type':
              'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'},
}


def conv(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=_DN)


def dw_autodiff(x, w, dy):
  return jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]


def dw_batch_as_channels(x, w, dy):
  """The filter gradient as a conv whose 'channels' are the batch: x as C
  images of HxW with N features, dy as an HxW kernel of N -> O."""
  k = w.shape[0]
  xt = jnp.transpose(x, (3, 1, 2, 0))
  kern = jnp.transpose(dy, (1, 2, 0, 3))
  p = (k - 1) // 2
  out = lax.conv_general_dilated(xt, kern, (1, 1), ((p, k - 1 - p),) * 2,
                                 dimension_numbers=_DN)
  return jnp.transpose(out, (1, 2, 0, 3))


def dw_shifted_matmuls(x, w, dy):
  """One [C, N*H*W] x [N*H*W, O] matmul per kernel tap (no im2col buffer)."""
  k, h, wd = w.shape[0], x.shape[1], x.shape[2]
  p = (k - 1) // 2
  xp = jnp.pad(x, ((0, 0), (p, k - 1 - p), (p, k - 1 - p), (0, 0)))
  taps = [jnp.einsum('nhwc,nhwo->co', xp[:, i:i + h, j:j + wd], dy)
          for i in range(k) for j in range(k)]
  return jnp.stack(taps).reshape(w.shape)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--shape', default='128,12,12,64,64,5',
                 help='N,H,W,C_in,C_out,K')
  p.add_argument('--reps', type=int, default=7)
  args = p.parse_args(argv)
  n, h, w_, c, o, k = map(int, args.shape.split(','))
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (n, h, w_, c))
  w = jax.random.normal(keys[1], (k, k, c, o)) * 0.05
  dy = jax.random.normal(keys[2], (n, h, w_, o))
  ops = {'forward': (conv, (x, w)),
         'input grad': (lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](
             dy)[0], (x, w, dy)),
         'filter grad': (dw_autodiff, (x, w, dy)),
         'filter grad, batch as channels': (dw_batch_as_channels, (x, w, dy)),
         'filter grad, per-tap matmuls': (dw_shifted_matmuls, (x, w, dy))}
  ref = dw_autodiff(x, w, dy)
  fns = {}
  for lib, opts in OPTIONS.items():
    for name, (f, a) in ops.items():
      fns[(name, lib)] = (jax.jit(f).lower(*a).compile(opts), a)
      out = fns[(name, lib)][0](*a)
      if name.startswith('filter grad'):
        err = float(jnp.max(jnp.abs(out - ref)) / jnp.max(jnp.abs(ref)))
        assert err < 1e-4, (name, lib, err)
  times = {key: [] for key in fns}
  for _ in range(args.reps):
    for key, (f, a) in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(f(*a))
      times[key].append(time.perf_counter() - t)
  flop = 2 * n * h * w_ * c * o * k * k
  print(f'shape {args.shape}, load {os.getloadavg()[0]:.1f}')
  for (name, lib), t in times.items():
    med = statistics.median(t)
    print(f'{name:32s} {lib:8s} {1e3 * med:8.1f} ms (best {1e3 * min(t):7.1f})'
          f'  {flop / med / 1e9:6.1f} GFLOP/s')


if __name__ == '__main__':
  main()
