"""Winograd 3x3 convolutions written in jnp, against oneDNN's direct ones.

A candidate of issue 18 (fewer multiplies for the 3x3 convs, which are
61% of alexnet_cifar's MACs): F(2x2,3x3) needs 16 multiplies per 4 outputs
where direct needs 36, F(4x4,3x3) 36 per 16 (144). Here the transforms are
strided slices and sums that XLA fuses, the products one batched dot_general
(a*a matmuls of [N*tiles, C] x [C, O]); autodiff gives the backward in the
Winograd domain too. It is exact up to rounding (forward errors 1e-6 for
F(2,3), 1e-5 for F(4,3) relative to the largest output).

  python -m benchmarks.winograd_probe            # the alexnet_cifar 3x3 shapes
  python -m benchmarks.winograd_probe --reps 15

Measured 2026-12-02 on the 2-core AVX2-only dev VM (docs/performance.md):
slower than oneDNN at every shape, so it is not used.
"""
from __future__ import annotations

import argparse
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.ops import conv as conv_ops
from jaxcnn.ops import cpu_options

# (m, B^T, G, A^T) of F(m x m, 3 x 3) (Lavin & Gray, 2016).
F23 = (2, ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
       ((1, 0, 0), (.5, .5, .5), (.5, -.5, .5), (0, 0, 1)),
       ((1, 1, 1, 0), (0, 1, -1, -1)))
F43 = (4, ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
           (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
       ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
       ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0),
        (0, 1, -1, 8, -8, 1)))
SHAPES = ((128, 8, 8, 192, 384), (128, 8, 8, 384, 256), (128, 8, 8, 256, 256),
          (128, 16, 16, 64, 64))


def _combine(coeffs, parts):
  """sum(c * p) over the non-zero coefficients, without multiplies by +-1."""
  out = None
  for c, p in zip(coeffs, parts):
    if c:
      t = p if c == 1 else -p if c == -1 else c * p
      out = t if out is None else out + t
  return out


def winograd_conv(x, w, spec=F23):
  """SAME, stride-1 3x3 convolution of NHWC `x` with HWIO `w`."""
  m, bt, g, at = spec
  a = m + 2
  n, h, wd, c = x.shape
  th, tw = -(-h // m), -(-wd // m)
  xp = jnp.pad(x, ((0, 0), (1, th * m + 1 - h), (1, tw * m + 1 - wd), (0, 0)))
  rows = [xp[:, i:i + m * (th - 1) + 1:m] for i in range(a)]
  tiles = []
  for k in range(a):
    u = _combine(bt[k], rows)
    cols = [u[:, :, j:j + m * (tw - 1) + 1:m] for j in range(a)]
    tiles += [_combine(bt[l], cols) for l in range(a)]
  v = jnp.stack(tiles).reshape(a * a, n * th * tw, c)
  gm = jnp.asarray(g, x.dtype)
  u = jnp.einsum('ka,abco,lb->klco', gm, w, gm).reshape(a * a, c, -1)
  prod = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))))
  prod = prod.reshape(a, a, n, th, tw, -1)
  out = []
  for i in range(m):
    r = _combine(at[i], [prod[k] for k in range(a)])
    out += [_combine(at[j], [r[l] for l in range(a)]) for j in range(m)]
  y = jnp.stack(out).reshape(m, m, n, th, tw, -1).transpose(2, 3, 0, 4, 1, 5)
  return y.reshape(n, th * m, tw * m, -1)[:, :h, :wd]


def _direct(x, w):
  return conv_ops.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _median_ms(fn, args, reps):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return sorted(times)[reps // 2] * 1e3


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--reps', type=int, default=7)
  args = p.parse_args(argv)
  print(cpu_options.describe('auto', jax.sharding.Mesh(
      np.array(jax.devices()[:1]), ('data',))))
  opts = cpu_options.train_compiler_options('cpu', 'auto')
  rng = np.random.default_rng(0)
  for n, h, wd, c, o in SHAPES:
    x = jnp.asarray(rng.standard_normal((n, h, wd, c), np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, c, o), np.float32)
                    / math.sqrt(9 * c))
    ct = jnp.asarray(rng.standard_normal((n, h, wd, o), np.float32))
    line = f'{n}x{h}x{wd} {c}->{o}:'
    for name, f in (('oneDNN direct', _direct),
                    ('F(2,3)', functools.partial(winograd_conv, spec=F23)),
                    ('F(4,3)', functools.partial(winograd_conv, spec=F43))):
      fwd = jax.jit(f, compiler_options=opts)
      both = jax.jit(jax.grad(lambda a, b, f=f: jnp.sum(f(a, b) * ct),
                              argnums=(0, 1)), compiler_options=opts)
      line += (f'  {name} fwd {_median_ms(fwd, (x, w), args.reps):.1f} ms, '
               f'fwd+grads {_median_ms(both, (x, w), args.reps):.1f} ms')
    print(line, flush=True)


if __name__ == '__main__':
  main()
