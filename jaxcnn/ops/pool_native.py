"""Max pooling's forward and backward as C++ passes (pool_kernel.cc), on CPU.

`max_pool(x, window, strides, pads, out)` is jaxcnn.ops.pooling's tap-walk
max pool (float32, NHWC, at most 127 taps) with a custom VJP: without
autodiff one pass writes the output; under autodiff the forward also writes
each output's first maximal tap (int8) and the backward adds each output
gradient into the input element that tap names. It lowers for CPU only:
pooling.py puts it in the CPU branch of a `lax.platform_dependent`.

Why (docs/performance.md, issue 18): XLA:CPU runs the jnp tap walk as
several loops over the padded input (pad, nine strided slices, selects) and
the eval pool as a reduce-window; here each element is read once per
direction. `python -m benchmarks.cpu_ops pool` times the impls.

Built on first use (native_build, `-O3 -march=native`), then checked
against XLA's reduce-window and its select-and-scatter gradient on a small
input; any failure leaves `status()` false with the reason and pooling.py
keeps the jnp tap walk.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.ops import native_build

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'pool_kernel.cc')
FLAGS = ('-O3', '-march=native', '-fno-math-errno', '-fno-trapping-math',
         '-pthread')
TARGETS = {'jaxcnn_pool_forward': 'JaxcnnPoolForward',
           'jaxcnn_pool_forward_argmax': 'JaxcnnPoolForwardArgmax',
           'jaxcnn_pool_backward': 'JaxcnnPoolBackward'}
MAX_TAPS = 127  # the tap index is int8


@dataclasses.dataclass(frozen=True)
class Status:
  ok: bool
  reason: str  # why not, or the library's path


def _attrs(window, strides, pads) -> dict:
  return dict(kh=np.int64(window[0]), kw=np.int64(window[1]),
              sh=np.int64(strides[0]), sw=np.int64(strides[1]),
              pt=np.int64(pads[0][0]), pl=np.int64(pads[1][0]))


def _out_shape(x_shape, out):
  return (*x_shape[:-3], *out, x_shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def max_pool(x, window, strides, pads, out):
  """NHWC float32 max pool; pads ((top, bottom), (left, right)), out the
  output's (height, width): both from pooling._geometry."""
  y = jax.ShapeDtypeStruct(_out_shape(x.shape, out), x.dtype)
  return jax.ffi.ffi_call('jaxcnn_pool_forward', y,
                          vmap_method='broadcast_all')(
                              x, **_attrs(window, strides, pads))


def _fwd(x, window, strides, pads, out):
  shape = _out_shape(x.shape, out)
  y, first = jax.ffi.ffi_call(
      'jaxcnn_pool_forward_argmax',
      (jax.ShapeDtypeStruct(shape, x.dtype),
       jax.ShapeDtypeStruct(shape, jnp.int8)),
      vmap_method='broadcast_all')(x, **_attrs(window, strides, pads))
  return y, (first, x.shape)


def _bwd(window, strides, pads, out, residuals, g):
  first, x_shape = residuals
  dx = jax.ShapeDtypeStruct(x_shape, g.dtype)
  return (jax.ffi.ffi_call('jaxcnn_pool_backward', dx,
                           vmap_method='broadcast_all')(
                               g, first, **_attrs(window, strides, pads)),)


max_pool.defvjp(_fwd, _bwd)


def _self_check() -> None:
  """Against XLA's reduce-window and select-and-scatter: raises if off."""
  rng = np.random.default_rng(0)
  # Distinct values: no ties, so both gradients route alike.
  x = rng.permutation(2 * 7 * 6 * 3).reshape(2, 7, 6, 3).astype(np.float32)
  g = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
  cpu = jax.devices('cpu')[0]
  x, g = jax.device_put(x, cpu), jax.device_put(g, cpu)
  pads, window, strides = ((1, 1), (1, 0)), (3, 2), (2, 2)

  def xla(v):
    return lax.reduce_window(v, -jnp.inf, lax.max, (1, *window, 1),
                             (1, *strides, 1), ((0, 0), *pads, (0, 0)))

  def ours(v):
    return max_pool(v, window, strides, pads, (4, 3))

  np.testing.assert_array_equal(jax.jit(ours)(x), xla(x))
  got = jax.jit(lambda x, g: jax.vjp(ours, x)[1](g)[0])(x, g)
  np.testing.assert_allclose(got, jax.vjp(xla, x)[1](g)[0], rtol=1e-6,
                             atol=1e-6)


@functools.lru_cache(maxsize=1)
def status() -> Status:
  """Builds (first time on this machine), registers, self-checks; cached."""
  try:
    path = native_build.load_checked('pool', SOURCE, FLAGS, TARGETS,
                                     _self_check)
  except Exception as e:  # pylint: disable=broad-except
    return Status(False, f'{type(e).__name__}: {e}')
  return Status(True, path)
