"""Max pooling whose gradient is cheap on XLA:CPU.

`jax.grad` of `lax.reduce_window(max)` is a select-and-scatter. XLA:CPU
(jaxlib 0.10.2) expands it into a variadic reduce-window that carries the
value plus one int32 iota array per window dimension and per spatial axis,
then a scatter into a zero-filled buffer. A profile of the tutorial net's
train step on 2 cores (docs/performance.md) put the two max pools' backward
at about half of the whole step. Forward + backward of pool1 (128x24x24x64,
3x3/2) on one core: 164 ms with select-and-scatter, 33 ms below.

Here the window taps are walked instead. Under autodiff the forward takes
the max over the nine (k x k) strided slices of the padded input and keeps,
per output, the index of the first tap that holds it (int8; select-and-
scatter's tie rule: row-major window order, the first maximum wins). The
backward routes each output gradient to that tap, sums the shares per
stride phase and interleaves the phases into the input gradient. All of it
is slices, selects, pads and one reshape, which XLA fuses into a few loops.
Keeping the index instead of the input (as an earlier version did) saves
the backward's pass over the padded input: forward + backward of
relu(x + b) then the pool, 2026-12-03 AMX VM, batch 128: 24x24x64 SAME
9.3 -> 6.1 ms, 32x32x64 VALID 39.3 -> 25.8 ms, 16x16x192 VALID 14.8 ->
8.8 ms, the gradients equal (`python -m benchmarks.cpu_ops pool` times it
against flax's select-and-scatter). Without autodiff (eval) the tap walk is
XLA's reduce-window. Where windows overlap, an input's gradient is a sum
over windows taken in a different order than XLA's scatter, so results
agree to float rounding (1 ulp), not bit for bit; tests/test_pooling.py
checks both the routing (ties included) and the values.

`impl='native'` (and `'auto'` where it can run: float32, at most 127 taps,
a C++ compiler) is the same routing as one C++ pass per direction
(pool_native.py): the tap walk's pad, slices and selects are several XLA
loops over the input. Models pick it beside oneDNN convs only
(models/layers.pool_impl), so exports and multi-device meshes keep XLA ops.

`lax.platform_dependent` keeps GPU/TPU on XLA's native select-and-scatter,
which is fast there: the choice is made at lowering time, per backend.
"""
from __future__ import annotations

import functools
from typing import Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn.ops import pool_native

Padding = Union[str, Sequence[tuple[int, int]]]


IMPLS = ('taps', 'auto', 'native')


def max_pool(x: jax.Array, window: Sequence[int], strides: Sequence[int],
             padding: Padding = 'VALID', impl: str = 'taps') -> jax.Array:
  """NHWC max pool, same results as `flax.linen.max_pool` (forward exact).

  padding: 'VALID', 'SAME' or ((top, bottom), (left, right)).
  impl (the CPU lowering; GPU/TPU always get XLA's reduce-window):
    'taps': the jnp tap walk above (XLA ops only: exports, meshes);
    'native': the C++ kernel (pool_native.py); an error if it cannot run
      here (no compiler, not float32, more than 127 taps);
    'auto': 'native' where it can run, else 'taps'.
  """
  if x.ndim != 4:
    raise ValueError(f'max_pool expects NHWC input, got shape {x.shape}')
  window, strides = tuple(window), tuple(strides)
  if len(window) != 2 or len(strides) != 2:
    raise ValueError(f'window {window} and strides {strides} must each '
                     'have 2 (spatial) entries')
  if impl not in IMPLS:
    raise ValueError(f'max_pool impl {impl!r}; valid: {", ".join(IMPLS)}')
  if not isinstance(padding, str):
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  native = functools.partial(_reduce_window_max, window=window,
                             strides=strides, padding=padding)
  cpu = lambda x: _max_pool_taps(x, window, strides, padding)
  reason = _native_reason(x, window) if impl != 'taps' else 'taps asked'
  if impl == 'native' and reason:
    raise ValueError(f'max_pool impl native cannot run here: {reason}')
  if not reason:
    pads, out = _geometry(x.shape, window, strides, padding)
    cpu = lambda x: pool_native.max_pool(x, window, strides, pads, out)
  return lax.platform_dependent(x, cpu=cpu, default=native)


def _native_reason(x, window) -> str:
  """Why the C++ pool cannot take x, or ''."""
  if x.dtype != jnp.float32:
    return f'dtype {x.dtype} (float32 only)'
  if window[0] * window[1] > pool_native.MAX_TAPS:
    return f'{window[0] * window[1]} taps (at most {pool_native.MAX_TAPS})'
  st = pool_native.status()
  return '' if st.ok else st.reason


def _reduce_window_max(x, *, window, strides, padding):
  # A Python-scalar init makes this the differentiable reduce_window_max
  # primitive (an array init gives the generic, non-differentiable one).
  if not isinstance(padding, str):
    padding = ((0, 0), *padding, (0, 0))
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1),
                           (1, *strides, 1), padding)


def _geometry(shape, window, strides, padding):
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(shape[1:3], window, strides, padding)
  else:
    pads = padding
  out = tuple((shape[1 + a] + pads[a][0] + pads[a][1] - window[a])
              // strides[a] + 1 for a in range(2))
  return tuple(tuple(p) for p in pads), out


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_taps(x, window, strides, padding):
  return _reduce_window_max(x, window=window, strides=strides,
                            padding=padding)


def _pad_taps(x, window, strides, pads, out):
  """The strided slice of the -inf-padded input each window tap sees."""
  n, _, _, c = x.shape
  xp = lax.pad(x, jnp.array(-jnp.inf, x.dtype),
               [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)])
  for i in range(window[0]):
    for j in range(window[1]):
      end = (i + (out[0] - 1) * strides[0] + 1,
             j + (out[1] - 1) * strides[1] + 1)
      yield i, j, lax.slice(xp, (0, i, j, 0), (n, *end, c),
                            (1, *strides, 1))


def _fwd(x, window, strides, padding):
  # Under autodiff the forward also records which tap held each window's
  # maximum (the first in row-major order on ties, select-and-scatter's
  # rule), so the backward reads that small array instead of re-reading
  # the input nine times (docs/performance.md, issue 18).
  pads, out = _geometry(x.shape, window, strides, padding)
  taps = window[0] * window[1]
  index_type = jnp.int8 if taps <= 127 else jnp.int32
  y = first = None
  for i, j, tap in _pad_taps(x, window, strides, pads, out):
    if y is None:
      y, first = tap, jnp.zeros(tap.shape, index_type)
      continue
    first = jnp.where(tap > y, jnp.asarray(i * window[1] + j, index_type),
                      first)
    y = lax.max(y, tap)  # NaN-propagating, as reduce-window's max
  return y, (first, x.shape)


def _bwd(window, strides, padding, residuals, g):
  first, x_shape = residuals
  pads, out = _geometry(x_shape, window, strides, padding)
  n, h, w, c = x_shape
  (sh, sw), hp, wp = strides, h + sum(pads[0]), w + sum(pads[1])
  zero = jnp.array(0, g.dtype)
  # Padded row a*sh + r only receives from taps i = r + sh*m (window a - m):
  # summing per phase (r, q) on an (a, b) grid and interleaving the phases
  # at the end writes the image-sized gradient once, instead of once per tap
  # with interior padding (measured 1.6-2.9x faster on the CIFAR pools).
  rows, cols = -(-hp // sh), -(-wp // sw)
  phases = {}
  for i in range(window[0]):
    for j in range(window[1]):
      (m, r), (k, q) = divmod(i, sh), divmod(j, sw)
      share = lax.pad(jnp.where(first == i * window[1] + j, g, zero), zero, [
          (0, 0, 0), (m, rows - out[0] - m, 0), (k, cols - out[1] - k, 0),
          (0, 0, 0)])
      phases[r, q] = phases[r, q] + share if (r, q) in phases else share
  empty = jnp.zeros((n, rows, cols, c), g.dtype)  # stride > window: gaps
  grid = jnp.stack([jnp.stack([phases.get((r, q), empty) for q in range(sw)],
                              axis=3) for r in range(sh)], axis=2)
  dxp = grid.reshape(n, rows * sh, cols * sw, c)
  dx = lax.slice(dxp, (0, pads[0][0], pads[1][0], 0),
                 (n, pads[0][0] + h, pads[1][0] + w, c))
  return (dx,)


_max_pool_taps.defvjp(_fwd, _bwd)
