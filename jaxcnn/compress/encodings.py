"""Leaf encodings of .jxcz artifacts (storage.py's container holds them):
dense, relative and CSR sparse indices, codebooks (k-means), sparse
codebooks (Deep Compression), product quantization, packed small ints and
the encoder that picks the smallest. See storage.py's docstring for each
format. Decoders check their inputs (ValueError; storage.load turns it
into an ArtifactError naming the file and leaf)."""
from __future__ import annotations

import math

import numpy as np

from jaxcnn.compress import bitpack, huffman


def _size(shape) -> int:
  return math.prod(int(d) for d in shape)  # Python ints: no overflow


def _packed_len(n: int, bits: int) -> int:
  return -(-n * bits // 8)


def _need(ok: bool, msg: str) -> None:
  """Decoders' input checks: ValueError, turned into an ArtifactError
  naming the file and leaf by `load`."""
  if not ok:
    raise ValueError(msg)


def _uint(maxval: int):
  for t in (np.uint8, np.uint16, np.uint32):
    if maxval <= np.iinfo(t).max:
      return t
  return np.uint64


def encode_relative(w: np.ndarray, bits: int = 8) -> dict:
  flat = w.reshape(-1)
  pos = np.flatnonzero(flat)
  top = (1 << bits) - 1
  gaps = np.diff(np.concatenate([[-1], pos]))
  fill = (gaps - 1) // top
  ends = np.cumsum(fill + 1) - 1
  n = int(ends[-1] + 1) if len(ends) else 0
  diffs = np.full(n, top, np.uint8)
  diffs[ends] = gaps - fill * top
  vals = np.zeros(n, np.float32)
  vals[ends] = flat[pos]
  if bits == 4:
    padded = np.concatenate([diffs, np.zeros(n % 2, np.uint8)])
    diffs = (padded[0::2] | (padded[1::2] << 4)).astype(np.uint8)
  elif bits != 8:
    raise ValueError(f'index_bits must be 4 or 8, got {bits}')
  return {'values': vals, 'gaps': diffs,
          'count': np.asarray([n], np.uint32)}


def decode_relative(arrays: dict, shape, bits: int) -> np.ndarray:
  _need(bits in (4, 8), f'index_bits must be 4 or 8, got {bits}')
  _need(arrays['count'].size == 1, 'count must hold one number')
  n = int(arrays['count'][0])
  gaps = arrays['gaps']
  _need(gaps.size == _packed_len(n, bits) and arrays['values'].size == n,
        f'{n} entries need {_packed_len(n, bits)} gap bytes and {n} values, '
        f'got {gaps.size} and {arrays["values"].size}')
  if bits == 4:
    gaps = np.stack([gaps & 15, gaps >> 4], axis=1).reshape(-1)[:n]
  pos = np.cumsum(gaps.astype(np.int64)) - 1
  # Every stored gap is >= 1; a 0 would write position -1 (the last weight).
  _need(not n or (gaps.min() > 0 and pos[-1] < _size(shape)),
        f'gaps place weights outside the {_size(shape)} positions')
  out = np.zeros(_size(shape), np.float32)
  out[pos] = arrays['values']
  return out.reshape(shape)


def encode_csr(w: np.ndarray) -> dict:
  m = w.reshape(-1, w.shape[-1]) if w.ndim > 1 else w.reshape(1, -1)
  rows, cols = np.nonzero(m)
  ptr = np.concatenate([[0], np.cumsum(np.bincount(rows,
                                                   minlength=m.shape[0]))])
  return {'values': m[rows, cols].astype(np.float32),
          'cols': cols.astype(_uint(m.shape[1])),
          'ptr': ptr.astype(_uint(int(ptr[-1])))}


def decode_csr(arrays: dict, shape) -> np.ndarray:
  shape = tuple(shape)
  ncol = shape[-1] if len(shape) > 1 else _size(shape)
  ptr = arrays['ptr'].astype(np.int64)
  rows = _size(shape[:-1]) if len(shape) > 1 else 1
  nnz = arrays['values'].size
  _need(ptr.size == rows + 1 and arrays['cols'].size == nnz,
        f'{rows} rows need {rows + 1} row pointers and one column per value, '
        f'got {ptr.size} pointers, {arrays["cols"].size} columns, {nnz} values')
  _need(ptr[0] == 0 and ptr[-1] == nnz and np.all(np.diff(ptr) >= 0)
        and (not nnz or int(arrays['cols'].max()) < ncol),
        'row pointers or column indices out of range')
  rows = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
  out = np.zeros((len(ptr) - 1, ncol), np.float32)
  out[rows, arrays['cols'].astype(np.int64)] = arrays['values']
  return out.reshape(shape)


def index_bits_for(k: int) -> int:
  return max(1, int(np.ceil(np.log2(max(k, 2)))))


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
  """Unsigned ints < 2^bits, `bits` each, little-endian, ceil(n*bits/8) B."""
  v = np.asarray(values, np.uint32).reshape(-1)
  planes = ((v[:, None] >> np.arange(bits, dtype=np.uint32)) & 1)
  return np.packbits(planes.astype(np.uint8).reshape(-1), bitorder='little')


def unpack_bits(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
  planes = np.unpackbits(packed, count=n * bits, bitorder='little')
  weights = (1 << np.arange(bits, dtype=np.int64))
  return planes.reshape(n, bits).astype(np.int64) @ weights


def encode_codebook(w: np.ndarray, max_values: int = 256) -> dict | None:
  """None unless w has at most `max_values` distinct values."""
  values, idx = np.unique(w.reshape(-1), return_inverse=True)
  if len(values) > max_values:
    return None
  return {'codebook': values.astype(np.float32),
          'idx': pack_bits(idx, index_bits_for(len(values)))}


def decode_codebook(arrays: dict, shape) -> np.ndarray:
  cb = arrays['codebook'].reshape(-1)
  n, bits = _size(shape), index_bits_for(len(cb))
  _need(len(cb) > 0 and arrays['idx'].size == _packed_len(n, bits),
        f'{n} weights at {bits} bits need {_packed_len(n, bits)} index bytes '
        f'and a non-empty codebook, got {arrays["idx"].size} and {len(cb)}')
  idx = unpack_bits(arrays['idx'], bits, n)
  _need(not n or int(idx.max()) < len(cb), 'codebook index out of range')
  return cb[idx].reshape(shape)


def encode_sparse_codebook(w: np.ndarray, bits: int,
                           max_values: int = 256) -> dict | None:
  flat = w.reshape(-1)
  pos = np.flatnonzero(flat)
  values, idx = np.unique(flat[pos], return_inverse=True)
  if len(values) > max_values or not len(pos):
    return None
  top = (1 << bits) - 1
  gaps = np.diff(np.concatenate([[-1], pos]))
  fill = (gaps - 1) // top          # fillers before each nonzero
  codes = np.zeros(int(np.sum(fill)) + len(pos), np.int64)
  ends = np.cumsum(fill + 1) - 1
  codes[ends] = gaps - fill * top   # fillers stay 0
  return {'codebook': values.astype(np.float32),
          'gaps': pack_bits(codes, bits),
          'idx': pack_bits(idx, index_bits_for(len(values))),
          'count': np.asarray([len(codes), len(pos)], np.uint32)}


def decode_sparse_codebook(arrays: dict, shape, bits: int) -> np.ndarray:
  _need(arrays['count'].size == 2 and 1 <= bits <= 16,
        'count must hold two numbers and bits be 1..16')
  n, nnz = (int(c) for c in arrays['count'])
  cb = arrays['codebook'].reshape(-1)
  kb, size = index_bits_for(len(cb)), _size(shape)
  # Each code advances >= 1 position, so there are at most `size` of them.
  _need(nnz <= n <= size and len(cb) > 0
        and arrays['gaps'].size == _packed_len(n, bits)
        and arrays['idx'].size == _packed_len(nnz, kb),
        f'counts {n}/{nnz} do not fit {size} weights or the stored streams')
  codes = unpack_bits(arrays['gaps'], bits, n)
  step = np.where(codes == 0, (1 << bits) - 1, codes)
  pos = (np.cumsum(step) - 1)[codes > 0]
  idx = unpack_bits(arrays['idx'], kb, nnz)
  _need(len(pos) == nnz and (not nnz or (pos[-1] < size
                                         and int(idx.max()) < len(cb))),
        'gaps or codebook indices out of range')
  out = np.zeros(size, np.float32)
  out[pos] = cb[idx]
  return out.reshape(shape)


def encode_pq(w: np.ndarray, sub_dim: int) -> dict:
  """Exact PQ encoding of a kernel whose column sub-vectors (rows
  m*d..m*d+d-1 of each column) repeat: one codebook per sub-space."""
  n_in, n_out = w.shape
  if n_in % sub_dim:
    raise ValueError(f'pq: sub_dim {sub_dim} does not divide {n_in} rows')
  subs = w.reshape(n_in // sub_dim, sub_dim, n_out).transpose(0, 2, 1)
  books, codes = [], []
  for sub in subs:                                  # [out, d]
    book, code = np.unique(sub, axis=0, return_inverse=True)
    books.append(book)
    codes.append(code.reshape(-1))
  k = max(len(b) for b in books)
  cb = np.zeros((len(books), k, sub_dim), np.float32)
  for m, b in enumerate(books):
    cb[m, :len(b)] = b
  return {'codebooks': cb,
          'codes': pack_bits(np.concatenate(codes), index_bits_for(k))}


def decode_pq(arrays: dict, shape) -> np.ndarray:
  cb = arrays['codebooks']
  _need(len(shape) == 2 and cb.ndim == 3, 'pq needs a 2-D leaf and 3-D '
        f'codebooks, got shapes {list(shape)} and {list(cb.shape)}')
  m, k, d = cb.shape
  n = m * shape[1]
  _need(k > 0 and m * d == shape[0] and arrays['codes'].size == _packed_len(
      n, index_bits_for(k)), f'codebooks {list(cb.shape)} and '
        f'{arrays["codes"].size} code bytes do not fit shape {list(shape)}')
  codes = unpack_bits(arrays['codes'], index_bits_for(k), n)
  _need(not n or int(codes.max()) < k, 'pq code out of range')
  sub = cb[np.repeat(np.arange(m), shape[1]), codes]      # [m*out, d]
  return sub.reshape(m, shape[1], d).transpose(0, 2, 1).reshape(shape)


def encode_packed_int(w: np.ndarray) -> dict | None:
  lo, hi = int(w.min()), int(w.max())
  bits = next((b for b in range(1, 8) if lo >= -(1 << (b - 1))
               and hi < (1 << (b - 1))), None)
  if bits is None:
    return None
  return {'data': pack_bits(w.reshape(-1).astype(np.int64) + (1 << (bits - 1)),
                            bits), 'nbits': np.asarray([bits], np.uint8)}


def decode_packed_int(arrays: dict, shape) -> np.ndarray:
  _need(arrays['nbits'].size == 1, 'nbits must hold one number')
  bits = int(arrays['nbits'][0])
  _need(1 <= bits <= 7 and arrays['data'].size == _packed_len(
      _size(shape), bits), f'{_size(shape)} values at {bits} bits do not fit '
        f'{arrays["data"].size} bytes')
  v = unpack_bits(arrays['data'], bits, _size(shape))
  return (v - (1 << (bits - 1))).astype(np.int8).reshape(shape)


def _nbytes(arrays: dict) -> int:
  return sum(a.nbytes for a in arrays.values())


def encode_leaf(w: np.ndarray, encoding: str, bits: int, hint=None):
  """(encoding name, arrays) for one leaf; `hint` forces e.g. pq."""
  w = np.asarray(w)
  if hint and hint.get('encoding') == 'pq':
    return 'pq', encode_pq(w, int(hint['sub_dim']))
  options = {'dense': {'data': w}}
  if encoding == 'binary':  # 1 bit per weight + alpha per filter
    packed = bitpack.encode_binary(w)
    return ('binary', packed) if packed is not None else (
        'dense', options['dense'])
  if w.dtype == np.int8 and w.size > 1 and encoding != 'dense':
    packed = encode_packed_int(w)
    if packed is not None:
      options['packed_int'] = packed
  if w.dtype == np.float32 and w.size > 1 and encoding != 'dense':
    if encoding in ('auto', 'relative'):
      options['relative'] = encode_relative(w, bits)
    if encoding in ('auto', 'csr'):
      options['csr'] = encode_csr(w)
    if encoding in ('auto', 'huffman'):
      for name, fn in (('codebook', lambda: encode_codebook(w)),
                       ('sparse_codebook',
                        lambda: encode_sparse_codebook(w, bits)),
                       ('huffman', lambda: huffman.encode_weights(w, bits)
                        if encoding == 'huffman' else None)):
        arrays = fn()
        if arrays is not None:
          options[name] = arrays
    else:
      return encoding, options[encoding]
  name = min(options, key=lambda k: _nbytes(options[k]))
  return name, options[name]
