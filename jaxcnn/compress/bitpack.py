"""Bit-packed binary layers: +-1 values as bits of uint32 words.

Bit convention (everywhere, including the .jxcz 'binary' encoding): value
v -> bit 1 if v >= 0 else 0, element 32*j + i of a row in bit i of word j
(little-endian). A row of n values takes ceil(n/32) words, padded with 0.

For a, w in {-1, +1}^n with bits A, W: a.w = n - 2 * popcount(A XOR W),
i.e. 2 * popcount(XNOR) - n, so a dense or conv layer is integer logic plus
one popcount per word (`jax.lax.population_count`). Zero padding of a conv
makes input entries 0, not +-1: a validity mask M drops them,
a.w = popcount(M) - 2 * popcount((A XOR W) AND M). Results are exact
integers; the float +-1 simulation is exact as well (sums of +-1 below
2^24), so both agree bit for bit (tests/test_compress_binary.py).

`apply_packed` runs a models/binary.py net with every BinConv/BinDense
computed this way (weights packed once by `packed_weights`).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models import binary as binary_models

WORD = 32


def words_for(n: int) -> int:
  return -(-n // WORD)


def pack_np(bits: np.ndarray) -> np.ndarray:
  """bool [rows, n] -> uint32 [rows, ceil(n/32)] (numpy, for storage)."""
  rows, n = bits.shape
  pad = np.zeros((rows, words_for(n) * WORD - n), bool)
  packed = np.packbits(np.concatenate([bits, pad], 1), axis=1,
                       bitorder='little')
  return np.ascontiguousarray(packed).view('<u4').astype(np.uint32)


def unpack_np(words: np.ndarray, n: int) -> np.ndarray:
  """uint32 [rows, w] -> bool [rows, n]."""
  b = np.unpackbits(np.ascontiguousarray(words.astype('<u4')).view(np.uint8),
                    axis=1, bitorder='little')
  return b[:, :n].astype(bool)


def pack(bits: jax.Array) -> jax.Array:
  """bool [..., n] -> uint32 [..., ceil(n/32)] (jnp, traceable)."""
  n = bits.shape[-1]
  pad = words_for(n) * WORD - n
  b = jnp.pad(bits, [(0, 0)] * (bits.ndim - 1) + [(0, pad)])
  b = b.reshape(*bits.shape[:-1], -1, WORD).astype(jnp.uint32)
  shifts = jnp.arange(WORD, dtype=jnp.uint32)
  return jnp.sum(b << shifts, axis=-1, dtype=jnp.uint32)  # distinct bits: OR


def pack_kernel(kernel) -> tuple[jax.Array, int]:
  """Kernel [..., out] -> (uint32 [out, words], n = fan-in) of sign bits.
  Conv kernels HWIO are ordered (I, H, W) to match the patch features."""
  k = jnp.asarray(kernel)
  if k.ndim == 4:
    k = jnp.transpose(k, (2, 0, 1, 3))
  flat = k.reshape(-1, k.shape[-1]).T
  return pack(flat >= 0), flat.shape[1]


def _popcount_dot(a, w, m=None):
  """a [..., W], w [O, W] (m like a or None) -> int32 [..., O]:
  sum over words of popcount((a ^ w) & m), one word at a time so the
  intermediate stays [..., O]."""
  total = None
  for j in range(a.shape[-1]):
    x = jnp.bitwise_xor(a[..., j:j + 1], w[:, j])
    if m is not None:
      x = jnp.bitwise_and(x, m[..., j:j + 1])
    c = jax.lax.population_count(x).astype(jnp.int32)
    total = c if total is None else total + c
  return total


def packed_dense(x: jax.Array, w_words: jax.Array, n: int) -> jax.Array:
  """x [B, n] of +-1, w_words [O, W] -> int32 [B, O] = x @ sign(W)."""
  a = pack(x >= 0)
  return n - 2 * _popcount_dot(a, w_words)


def packed_conv(x: jax.Array, w_words: jax.Array, kernel_hw, strides=(1, 1),
                padding='SAME') -> jax.Array:
  """x NHWC of +-1, kernel of sign bits -> int32 NHWC: the zero-padded conv
  by patch extraction and XNOR/popcount."""
  patches = jax.lax.conv_general_dilated_patches(
      x, tuple(kernel_hw), tuple(strides), padding,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  a = pack(patches > 0)
  if padding == 'VALID':
    return patches.shape[-1] - 2 * _popcount_dot(a, w_words)
  m = pack(patches != 0)
  valid = jnp.sum(jax.lax.population_count(m).astype(jnp.int32), -1,
                  keepdims=True)
  return valid - 2 * _popcount_dot(a, w_words, m)


def _interceptor(packed, next_fun, args, kwargs, context):
  module = context.module
  kind = type(module)
  if context.method_name != '__call__' or kind not in (
      binary_models.BinConv, binary_models.BinDense):
    return next_fun(*args, **kwargs)
  kernel = module.variables['params']['kernel']
  path = '/'.join(str(p) for p in module.scope.path)
  words, _ = packed[path]
  x = args[0]
  if kind is binary_models.BinConv:
    y = packed_conv(x, words, module.kernel_size,
                    (module.strides, module.strides), module.padding)
  else:
    y = packed_dense(x, words, kernel.shape[0])
  return binary_models.scale_output(y.astype(x.dtype), kernel, module.scale)


def find_binary_kernels(model: nn.Module, variables: dict, x) -> list[str]:
  """Module paths of the BinConv/BinDense layers (one shape-only trace)."""
  found = []

  def spy(next_fun, args, kwargs, context):
    if context.method_name == '__call__' and isinstance(
        context.module, (binary_models.BinConv, binary_models.BinDense)):
      found.append('/'.join(str(p) for p in context.module.scope.path))
    return next_fun(*args, **kwargs)
  with nn.intercept_methods(spy):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  return found


def packed_weights(model: nn.Module, variables: dict, x) -> dict:
  """{path: (uint32 words, fan-in)} of every binary layer's sign(kernel)."""
  out = {}
  for path in find_binary_kernels(model, variables, x):
    node = variables['params']
    for p in path.split('/'):
      node = node[p]
    out[path] = pack_kernel(node['kernel'])
  return out


def apply_packed(model: nn.Module, variables: dict, x: jax.Array,
                 packed: dict) -> jax.Array:
  """Logits of a models/binary.py net (act_bits = 1) with every binary layer
  run as XNOR + popcount on `packed` = packed_weights(...)."""
  with nn.intercept_methods(functools.partial(_interceptor, packed)):
    return model.apply(variables, x, train=False)


def encode_binary(w: np.ndarray) -> dict | None:
  """Storage ('binary' in storage.py) of a kernel whose every output filter
  is +-alpha: {'bits': uint32 [out, words], 'alpha': fp32 [out] (left out
  when every alpha is 1)}, else None.
  Sign bits are in the (all axes but last) row-major order of the kernel."""
  w = np.asarray(w)
  if w.dtype != np.float32 or w.ndim < 2:
    return None
  m = w.reshape(-1, w.shape[-1])
  alpha = np.abs(m[0])
  if not (np.all(alpha > 0) and np.all(np.abs(m) == alpha)):
    return None
  out = {'bits': pack_np((m >= 0).T)}
  if not np.all(alpha == 1):   # BinaryConnect/BNN: +-1, no scale to store
    out['alpha'] = alpha
  return out


def decode_binary(arrays: dict, shape) -> np.ndarray:
  n = int(np.prod(shape[:-1]))
  signs = np.where(unpack_np(arrays['bits'], n), np.float32(1),
                   np.float32(-1))
  if 'alpha' not in arrays:
    return signs.T.reshape(shape)
  return (signs * arrays['alpha'][:, None]).T.reshape(shape)
