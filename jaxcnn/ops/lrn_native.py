"""LRN's forward and backward as one C++ pass each (lrn_kernel.cc), on CPU.

`window_lrn(x, before, after, bias, alpha, beta)` is the float32 math of
jaxcnn.ops.lrn with a custom VJP whose two directions are XLA FFI calls into
the kernel. It lowers for CPU only: jaxcnn.ops.lrn puts it in the CPU
branch of a `lax.platform_dependent`, so GPU/TPU programs keep the jnp
version and its autodiff.

The kernel is compiled on first use (native_build, `-O3 -march=native`,
~2 s) and checked against the jnp version on a small input; any failure (no
compiler, a wrong result) leaves `status()` false with the reason, and
jaxcnn.ops.lrn keeps its jnp path. Measured on the CIFAR nets' LRN inputs,
forward + backward (docs/performance.md, issue 18).
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
                      'lrn_kernel.cc')
FLAGS = ('-O3', '-march=native', '-fno-math-errno', '-fno-trapping-math',
         '-pthread')
TARGETS = {'jaxcnn_lrn_forward': 'JaxcnnLrnForward',
           'jaxcnn_lrn_backward': 'JaxcnnLrnBackward'}


@dataclasses.dataclass(frozen=True)
class Status:
  ok: bool
  reason: str  # why not, or the library's path


def reference(x, before: int, after: int, bias, alpha, beta):
  """The jnp math (ops/lrn.py's, windows as sums of shifted slices)."""
  c = x.shape[-1]
  pad = jnp.pad(x * x, [(0, 0)] * (x.ndim - 1) + [(before, after)])
  total = sum(lax.slice_in_dim(pad, k, k + c, axis=-1)
              for k in range(before + after + 1))
  return x * jnp.exp(-beta * jnp.log(bias + alpha * total))


def _attrs(before, after, bias, alpha, beta) -> dict:
  return dict(before=np.int64(before), after=np.int64(after),
              bias=np.float32(bias), alpha=np.float32(alpha),
              beta=np.float32(beta))


def _call(target, out_like, *args, **attrs):
  out = jax.ShapeDtypeStruct(out_like.shape, out_like.dtype)
  return jax.ffi.ffi_call(target, out, vmap_method='broadcast_all')(
      *args, **attrs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def window_lrn(x, before, after, bias, alpha, beta):
  """float32 LRN over the last axis; window c-before..c+after; alpha on the
  raw sum of squares (TF convention). Hyper-parameters are Python numbers."""
  return _call('jaxcnn_lrn_forward', x, x,
               **_attrs(before, after, bias, alpha, beta))


def _fwd(x, before, after, bias, alpha, beta):
  return window_lrn(x, before, after, bias, alpha, beta), x


def _bwd(before, after, bias, alpha, beta, x, g):
  return (_call('jaxcnn_lrn_backward', x, x, g,
                **_attrs(before, after, bias, alpha, beta)),)


window_lrn.defvjp(_fwd, _bwd)


def _self_check() -> None:
  """Both directions against `reference` on a 3x5x7 input: raises if off."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((3, 5, 7)) * 3, jnp.float32)
  g = jnp.asarray(rng.standard_normal((3, 5, 7)), jnp.float32)
  args = (2, 1, 1.5, 0.3, 0.75)
  cpu = jax.devices('cpu')[0]
  x, g = jax.device_put(x, cpu), jax.device_put(g, cpu)
  got = jax.jit(lambda x, g: jax.vjp(
      lambda v: window_lrn(v, *args), x)[1](g)[0])(x, g)
  want = jax.vjp(lambda v: reference(v, *args), x)[1](g)[0]
  y = jax.jit(lambda x: window_lrn(x, *args))(x)
  np.testing.assert_allclose(y, reference(x, *args), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@functools.lru_cache(maxsize=1)
def status() -> Status:
  """Builds (first time on this machine), registers, self-checks; cached."""
  try:
    path = native_build.load_checked('lrn', SOURCE, FLAGS, TARGETS,
                                     _self_check)
  except Exception as e:  # pylint: disable=broad-except
    return Status(False, f'{type(e).__name__}: {e}')
  return Status(True, path)
