"""2-D convolutions through oneDNN on CPU, XLA's everywhere else.

Why: XLA:CPU (jaxlib 0.10.2) runs convolutions on Eigen or YNNPACK, and both
are well behind oneDNN, the library TensorFlow and PyTorch use on x86. The
tutorial net's conv2 (128x12x12, 64->64, 5x5) on the 2-core dev CPU, median
ms, forward / input gradient / kernel gradient: Eigen 14.6 / 14.6 / 16.3,
oneDNN 7.2 / 7.1 / 7.5; conv1 (24x24, 3->64) forward 4.3-11 (Eigen) vs 1.7
(docs/performance.md has the commands and the whole-step effect).

`conv_general_dilated` has lax's signature, so it drops into
`flax.linen.Conv(conv_general_dilated=...)`. It takes the oneDNN path for
what dnnl_conv.cc handles (float32, NHWC/HWIO, one feature group, no
dilation, non-negative padding) and defers to `lax.conv_general_dilated`
for anything else. `lax.platform_dependent` picks oneDNN at lowering time
on CPU only, so GPU/TPU programs are XLA's own convolution, unchanged. The
gradient is a custom VJP whose two halves are oneDNN's backward-data and
backward-weights primitives (reverse mode only: no jvp or second order).

`conv_fn('onednn_bf16')` is the same path with bf16-rounded inputs and
float32 accumulation (dnnl_conv.cc): on AVX512_BF16, forward and
input-gradient convolutions measured ~1.8x and filter gradients ~1.3x
faster than float32 oneDNN; offered only where oneDNN reports native bf16.

Inside `jit` with the batch sharded over several devices, the custom calls
would be replicated by XLA's partitioner; `cpu_options` uses this path only
for one-device CPU meshes.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcnn.ops import dnnl_build

IMPLS = ('xla', 'onednn', 'onednn_bf16')
_NHWC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def _call(kind: str, out_shape, a, b, strides, pads, bf16: bool):
  (pt, pb), (pl, pr) = pads
  return jax.ffi.ffi_call(
      dnnl_build.TARGET_PREFIX + kind,
      jax.ShapeDtypeStruct(out_shape, jnp.float32),
      vmap_method='sequential')(
          a, b, sh=np.int64(strides[0]), sw=np.int64(strides[1]),
          pt=np.int64(pt), pb=np.int64(pb), pl=np.int64(pl), pr=np.int64(pr),
          bf16=np.int64(bf16))


def _out_shape(x_shape, w_shape, strides, pads):
  n, h, w, _ = x_shape
  kh, kw, _, o = w_shape
  oh = (h + sum(pads[0]) - kh) // strides[0] + 1
  ow = (w + sum(pads[1]) - kw) // strides[1] + 1
  return (n, oh, ow, o)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _onednn(x, w, strides, pads, bf16):
  return _call('forward', _out_shape(x.shape, w.shape, strides, pads), x, w,
               strides, pads, bf16)


def _fwd(x, w, strides, pads, bf16):
  return _onednn(x, w, strides, pads, bf16), (x, w)


def _bwd(strides, pads, bf16, res, g):
  x, w = res
  dx = _call('backward_data', x.shape, g, w, strides, pads, bf16)
  dw = _call('backward_weights', w.shape, x, g, strides, pads, bf16)
  return dx, dw


_onednn.defvjp(_fwd, _bwd)


def _explicit_pads(x_shape, w_shape, strides, padding):
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(x_shape[1:3], w_shape[:2], strides,
                                     padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _dims_are_nhwc(dimension_numbers, ndim) -> bool:
  if dimension_numbers is None or ndim != 4:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return tuple(map(tuple, dimension_numbers)) == tuple(map(tuple, _NHWC))
  return tuple(dimension_numbers) == ('NHWC', 'HWIO', 'NHWC')


def handles(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation,
            dimension_numbers, feature_group_count, batch_group_count,
            preferred_element_type) -> bool:
  """Whether the oneDNN path computes this convolution (else lax's)."""
  ones = lambda d: d is None or all(int(v) == 1 for v in d)  # pylint: disable=unnecessary-lambda-assignment
  if not (_dims_are_nhwc(dimension_numbers, lhs.ndim) and ones(lhs_dilation)
          and ones(rhs_dilation) and feature_group_count == 1
          and batch_group_count == 1 and len(strides) == 2):
    return False
  if lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32:
    return False
  if preferred_element_type not in (None, jnp.float32):
    return False
  pads = _explicit_pads(lhs.shape, rhs.shape, strides, padding)
  return all(p >= 0 for pair in pads for p in pair) and min(lhs.shape) > 0


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                         lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None, *,
                         bf16: bool = False) -> jax.Array:
  """`lax.conv_general_dilated`, on oneDNN when on CPU and supported.

  bf16: oneDNN rounds the float32 inputs of each convolution (and of both
  its gradients) to bfloat16 and accumulates in float32; the result stays
  float32. Only the CPU path changes: elsewhere it is lax's float32 conv.
  """
  xla = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides,
      padding=padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
  if not handles(lhs, rhs, window_strides, padding, lhs_dilation,
                 rhs_dilation, dimension_numbers, feature_group_count,
                 batch_group_count, preferred_element_type):
    return xla(lhs, rhs)
  strides = tuple(int(s) for s in window_strides)
  pads = _explicit_pads(lhs.shape, rhs.shape, strides, padding)
  onednn = lambda a, b: _onednn(a, b, strides, pads, bool(bf16))  # pylint: disable=unnecessary-lambda-assignment
  return lax.platform_dependent(lhs, rhs, cpu=onednn, default=xla)


def conv_fn(impl: str):
  """The function a model passes to flax's Conv for `impl` in IMPLS."""
  if impl not in IMPLS:
    raise ValueError(f'conv impl must be one of {IMPLS}, got {impl!r}')
  if impl == 'xla':
    return lax.conv_general_dilated
  bf16 = impl == 'onednn_bf16'
  status = onednn_bf16_status() if bf16 else onednn_status()
  if not status.ok:  # also registers the FFI targets before any lowering
    raise ValueError(f'conv impl {impl}: {status.reason}')
  return functools.partial(conv_general_dilated, bf16=bf16)


@functools.lru_cache(maxsize=1)
def onednn_status() -> dnnl_build.Status:
  """dnnl_build.status(), plus a check of one strided, padded convolution
  and both of its gradients against XLA's on the CPU (rtol 1e-4)."""
  return _checked(dnnl_build.status(), bf16=False)


@functools.lru_cache(maxsize=1)
def onednn_bf16_status() -> dnnl_build.Status:
  """As onednn_status for the bf16 path, which is offered only where oneDNN
  multiplies bf16 natively (emulated, it is slower than float32), and is
  checked against XLA's float32 convolution at bf16's tolerance."""
  st = onednn_status()
  if st.ok and not st.native_bf16:
    return dnnl_build.Status(
        False, 'this CPU has no native bf16 dot products (AVX512_BF16 or '
        'AMX) for oneDNN; use xla_cpu_conv=onednn (float32)', st.version)
  return _checked(st, bf16=True)


def _checked(st: dnnl_build.Status, bf16: bool) -> dnnl_build.Status:
  if not st.ok:
    return st
  try:
    # Eager even when first asked from inside a trace (a model's apply).
    with jax.ensure_compile_time_eval():
      _self_check(bf16)
  except Exception as e:  # pylint: disable=broad-except
    return dnnl_build.Status(False, f'oneDNN self-check failed: '
                             f'{type(e).__name__}: {e}'[:500])
  return st


def _self_check(bf16: bool) -> None:
  cpu = jax.devices('cpu')[0]
  rng = np.random.default_rng(0)
  x = jax.device_put(rng.standard_normal((2, 7, 7, 3), np.float32), cpu)
  w = jax.device_put(rng.standard_normal((3, 3, 3, 5), np.float32), cpu)
  args = dict(window_strides=(2, 2), padding=((1, 0), (2, 1)),
              dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  got = jax.jit(jax.value_and_grad(
      lambda a, b: jnp.sum(jnp.sin(conv_general_dilated(a, b, **args,
                                                        bf16=bf16))),
      argnums=(0, 1)))(x, w)
  want = jax.jit(jax.value_and_grad(
      lambda a, b: jnp.sum(jnp.sin(lax.conv_general_dilated(a, b, **args))),
      argnums=(0, 1)))(x, w)
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    g, e = np.asarray(g), np.asarray(e)
    # bf16 keeps 8 significant bits: inputs rounded by 2^-9 relative, sums
    # of 27 products, so a few 1e-2 of the largest value.
    atol = 3e-2 * max(1.0, float(np.abs(e).max())) if bf16 else 1e-4
    np.testing.assert_allclose(g, e, rtol=3e-2 if bf16 else 1e-4, atol=atol)
