"""Local response normalisation across channels, for channel-last arrays.

    b[c] = a[c] / (k + alpha' * sum_{j in window(c)} a[j]^2) ** beta

Two conventions exist (SPEC.md §1):
  * `lrn`: AlexNet paper / `tf.nn.local_response_normalization`. The window is
    the 2r+1 channels c-r..c+r and alpha' = alpha (raw sum).
  * `lrn_caffe`: Caffe, Paddle `img_cmrnorm`, `torch.nn.LocalResponseNorm`.
    The window has `size` channels and alpha' = alpha / size. Odd sizes are
    centred; even sizes follow PyTorch, whose window for channel c is
    c - size//2 .. c + (size-1)//2. So `lrn_caffe(x, n, k, a, b)` equals
    `lrn(x, (n-1)//2, k, a/n, b)` for odd n.
Out-of-range channels count as zero, so edge channels see a shorter window.

Implementation choice. Measured: forward + backward (`jax.vjp` of the op and
its pullback under one `jit`), float32, radius 4, on the 2-core dev CPU
(jax 0.10.2, other jobs sharing the cores), best / median of 20 interleaved
runs, milliseconds:

  window sum, then s**-beta           128x24x24x64     128x12x12x64
    sum of 9 shifted slices           370 / 391        87 / 93
    lax.reduce_window                  79 / 100        15 / 18
    banded [C,C] 0/1 matmul            78 / 103        16 / 17
  window sum, then exp(-beta*log s)
    lax.reduce_window                  41 / 56        5.7 / 7.0
    banded matmul  (chosen)            40 / 55        4.9 / 6.3
  custom_vjp, analytic gradient        58 / 67        9.7 / 11.0
    (banded matmul, s**-beta)

  exp(-beta*log s), more channels     reduce_window    banded matmul
    128x16x16x96                       30 / 33         29 / 34
    128x16x16x128                      44 / 48         56 / 62
    128x8x8x256                        11 / 19         28 / 31
    32x27x27x256                       57 / 68         84 / 92

Findings:
  1. `s ** -beta` costs more than the window sum, because its derivative is a
     second pow. Written as exp(-beta * log s), autodiff reuses the forward
     value (d/ds = -beta * p / s): 2-3x faster end to end, and faster than
     the hand-written custom_vjp, which would also lose forward-mode autodiff
     and traced hyper-parameters. So plain autodiff is kept.
  2. The band matmul (C MACs per element, but one GEMM) edges out
     reduce_window up to C = 96 and loses from C = 128 on (O(C^2) work), so
     impl='auto' switches at 128 channels. Both are ~9x faster than slices.
Reproduce the matmul/reduce_window rows with `benchmark_lrn` below.

  3. On CPU, impl='auto' runs `lrn_native`'s C++ kernel when the math is
     float32 and bias, alpha, beta are Python numbers (as in every model):
     one pass per direction, the backward recomputing the window sums from
     x. Forward + backward, train-step compiler options, 2026-12-03 AMX
     VM (`python -m benchmarks.cpu_ops lrn`), ms native / reduce_window /
     matmul: 128x16x16x192 r=2 19.0 / 25.8 / 54.8; 128x32x32x64 r=2
     19.6 / 34.8 / 43.4; 128x24x24x64 r=4 12.6 / 20.7 / 22.2;
     128x12x12x64 r=4 3.3 / 4.9 / 6.3. Reverse mode only (a custom VJP):
     forward-mode autodiff needs impl='matmul' or 'reduce_window'. Without a compiler, or elsewhere
     than CPU, 'auto' is the jnp choice above; impl='jnp' always is (the
     models use it unless their convs are a CPU library's, so exports and
     multi-device meshes hold XLA ops only: models/layers.lrn_impl).
"""
from __future__ import annotations

import functools
import time
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.ops import lrn_native

Impl = Literal['auto', 'jnp', 'matmul', 'reduce_window', 'native']

# Measured crossover (see module docstring): matmul for fewer channels.
_MATMUL_MAX_CHANNELS = 127


@functools.lru_cache(maxsize=64)
def _band(channels: int, before: int, after: int) -> np.ndarray:
  """[C_in, C_out] 0/1: entry (j, c) is 1 when c-before <= j <= c+after."""
  j = np.arange(channels)[:, None]
  c = np.arange(channels)[None, :]
  return ((j >= c - before) & (j <= c + after)).astype(np.float32)


def _window_sum(sq: jax.Array, before: int, after: int,
                impl: Impl) -> jax.Array:
  channels = sq.shape[-1]
  if impl == 'auto':
    impl = 'matmul' if channels <= _MATMUL_MAX_CHANNELS else 'reduce_window'
  if impl == 'matmul':
    band = jnp.asarray(_band(channels, before, after), sq.dtype)
    # HIGHEST: accelerators would otherwise round the squares to bf16/tf32.
    return jnp.matmul(sq, band, precision=lax.Precision.HIGHEST)
  if impl == 'reduce_window':
    nd = sq.ndim
    # A concrete zero lets JAX lower to reduce_window_sum, which (unlike the
    # generic reduce_window) has a transpose rule, i.e. reverse-mode autodiff.
    return lax.reduce_window(
        sq, np.zeros((), sq.dtype), lax.add,
        window_dimensions=(1,) * (nd - 1) + (before + after + 1,),
        window_strides=(1,) * nd,
        padding=((0, 0),) * (nd - 1) + ((before, after),))
  raise ValueError(f'unknown LRN impl {impl!r}')


def _jnp_lrn(xc, before, after, bias, alpha, beta, impl):
  s = bias + alpha * _window_sum(xc * xc, before, after, impl)
  # exp(-beta*log s) rather than s**-beta: see module docstring. Needs s > 0,
  # i.e. bias > 0, which every published setting has.
  return xc * jnp.exp(-beta * jnp.log(s))


def _concrete(*values) -> bool:
  return all(isinstance(v, (int, float, np.integer, np.floating))
             for v in values)


def _native_reason(xc, bias, alpha, beta) -> str:
  """Why the C++ kernel cannot take this call ('' when it can)."""
  if xc.dtype != jnp.float32:
    return f'it computes in float32, this LRN in {xc.dtype}'
  if not _concrete(bias, alpha, beta):
    return 'bias, alpha and beta must be Python numbers, not traced'
  st = lrn_native.status()
  return '' if st.ok else f'the kernel is unavailable: {st.reason}'


def _lrn(x: jax.Array, before: int, after: int, bias, alpha, beta,
         impl: Impl) -> jax.Array:
  if before < 0 or after < 0:
    raise ValueError(
        f'LRN window must be non-negative, got ({before}, {after})')
  if impl not in ('auto', 'jnp', 'matmul', 'reduce_window', 'native'):
    raise ValueError(f'unknown LRN impl {impl!r}')
  # Low-precision inputs: squares of activations overflow fp16 easily, and
  # the sum of squares loses bits in bf16, so work in (at least) float32.
  compute = jnp.promote_types(x.dtype, jnp.float32)
  xc = x.astype(compute)
  if impl in ('jnp', 'matmul', 'reduce_window'):
    # 'jnp': the choice by channel count, XLA ops only (portable exports).
    jnp_impl = 'auto' if impl == 'jnp' else impl
    return _jnp_lrn(xc, before, after, bias, alpha, beta,
                    jnp_impl).astype(x.dtype)
  why = _native_reason(xc, bias, alpha, beta)
  if impl == 'native' and why:
    raise ValueError(f"LRN impl 'native' unavailable: {why}")
  plain = lambda v: _jnp_lrn(v, before, after, bias, alpha, beta, 'auto')  # pylint: disable=unnecessary-lambda-assignment
  if why:
    return plain(xc).astype(x.dtype)
  # CPU: one C++ pass per direction (lrn_native); GPU/TPU keep XLA's.
  args = (before, after, float(bias), float(alpha), float(beta))
  native = lambda v: lrn_native.window_lrn(v, *args)  # pylint: disable=unnecessary-lambda-assignment
  return lax.platform_dependent(xc, cpu=native, default=plain).astype(x.dtype)


def lrn(x: jax.Array, depth_radius: int = 5, bias=1.0, alpha=1.0, beta=0.5,
        *, impl: Impl = 'auto') -> jax.Array:
  """TF / AlexNet-paper LRN on the last axis (defaults are TF's).

  Window of 2*depth_radius+1 channels; alpha multiplies the raw sum. The
  AlexNet paper's k=2, n=5, alpha=1e-4, beta=0.75 is
  `lrn(x, 2, 2.0, 1e-4, 0.75)`.
  """
  return _lrn(x, depth_radius, depth_radius, bias, alpha, beta, impl)


def lrn_caffe(x: jax.Array, size: int = 5, k=1.0, alpha=1e-4, beta=0.75,
              *, impl: Impl = 'auto') -> jax.Array:
  """Caffe / Paddle `img_cmrnorm` / PyTorch LRN on the last axis.

  alpha is divided by `size`. Defaults are PyTorch's; Paddle's CIFAR AlexNet
  uses size 5, scale (alpha) 1e-4, power (beta) 0.75.
  """
  if size < 1:
    raise ValueError(f'LRN size must be >= 1, got {size}')
  return _lrn(x, size // 2, (size - 1) // 2, k, alpha / size, beta, impl)


def benchmark_lrn(shape=(128, 24, 24, 64), impls=('matmul', 'reduce_window'),
                  repeats: int = 20) -> dict[str, float]:
  """Best-of-`repeats` seconds for jit(forward + backward) of `lrn`.

  `python -c "from jaxcnn.ops.lrn import benchmark_lrn as b; print(b())"`
  """
  x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
  g = jax.random.normal(jax.random.key(1), shape, jnp.float32)
  steps = {}
  for impl in impls:
    def step(x, impl=impl):
      y, pullback = jax.vjp(
          lambda v: lrn(v, 4, 1.0, 0.001 / 9, 0.75, impl=impl), x)
      return y, pullback(g)[0]
    steps[impl] = jax.jit(step)
    jax.block_until_ready(steps[impl](x))
  best = {impl: float('inf') for impl in impls}
  for _ in range(repeats):  # interleaved, so background load hits all alike
    for impl, step in steps.items():
      t0 = time.perf_counter()
      jax.block_until_ready(step(x))
      best[impl] = min(best[impl], time.perf_counter() - t0)
  return best
