"""Real compressed artifacts: one file, no pickle, loadable for inference.

Container: b'JXCZ', uint32 little-endian header length, a JSON header, then
the raw array bytes back to back. The header names every array with its
dtype, shape and offset, the model (registry name + overrides), the method's
metadata and each leaf's encoding. Per-entry overhead is a JSON line, so a
small model's file size is its arrays (an npz adds ~100 zip bytes per array).

Leaf encodings (chosen per leaf, the smallest wins under 'auto'):
  dense     fp32 as is;
  relative  Deep Compression's relative index: nonzeros of the flattened
            array as fp32 values plus the gap to the previous nonzero in
            `index_bits` bits (4: two per byte); a gap beyond 2^b - 1 gets
            filler entries of value 0;
  csr       rows = all axes but the last: values fp32, column index uint8 /
            uint16, row pointers uint16 / uint32.
  codebook  weight sharing (k-means, Deep Compression stage 2): the distinct
            values as an fp32 codebook plus every weight's index into it,
            bit-packed at ceil(log2 K) bits;
  sparse_codebook  pruned + shared: relative gaps (index_bits, gap 0 = a
            filler that advances 2^b - 1 without a weight) and the nonzeros'
            codebook indices, both bit-packed;
  pq        product quantization of a [in, out] kernel, forced by
            meta['leaf_encodings'][leaf] = {'encoding': 'pq', 'sub_dim': d}:
            codebooks [in/d, K, d] fp32 plus ceil(log2 K)-bit codes [in/d, out];
  packed_int  an int8 leaf whose values fit in b < 8 bits (int4 weights),
            two's complement packed at b bits.
  huffman   Deep Compression stage 3 (huffman.py), under encoding='huffman'
            only: sparse_codebook's gaps and indices, each stream
            canonical-Huffman coded; competes with the 'auto' options.
Binary methods use 'binary': kernels whose every output filter is
+-alpha become sign bits in uint32 words plus one fp32 alpha per filter
(bitpack.encode_binary); other leaves stay dense.
Decoding reproduces every stored float bit for bit, so the loaded net's
logits equal the in-memory net's.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

MAGIC = b'JXCZ'
MAGIC_ZHEADER = b'JXCz'  # the same, with a zlib-compressed JSON header


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
  n = int(arrays['count'][0])
  gaps = arrays['gaps']
  if bits == 4:
    gaps = np.stack([gaps & 15, gaps >> 4], axis=1).reshape(-1)[:n]
  pos = np.cumsum(gaps.astype(np.int64)) - 1
  out = np.zeros(int(np.prod(shape)), np.float32)
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
  ncol = shape[-1] if len(shape) > 1 else int(np.prod(shape))
  ptr = arrays['ptr'].astype(np.int64)
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
  cb = arrays['codebook']
  n = int(np.prod(shape))
  return cb[unpack_bits(arrays['idx'], index_bits_for(len(cb)), n)
            ].reshape(shape)


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
  n, nnz = (int(c) for c in arrays['count'])
  codes = unpack_bits(arrays['gaps'], bits, n)
  step = np.where(codes == 0, (1 << bits) - 1, codes)
  pos = (np.cumsum(step) - 1)[codes > 0]
  cb = arrays['codebook']
  out = np.zeros(int(np.prod(shape)), np.float32)
  out[pos] = cb[unpack_bits(arrays['idx'], index_bits_for(len(cb)), nnz)]
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
  m, k, d = cb.shape
  codes = unpack_bits(arrays['codes'], index_bits_for(k), m * shape[1])
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
  bits = int(arrays['nbits'][0])
  v = unpack_bits(arrays['data'], bits, int(np.prod(shape)))
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
    from jaxcnn.compress import bitpack
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
      from jaxcnn.compress import huffman
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


def flatten(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    p = f'{prefix}/{k}' if prefix else str(k)
    if isinstance(v, dict):
      out.update(flatten(v, p))
    else:
      out[p] = np.asarray(v)
  return out


def unflatten(flat: dict) -> dict:
  tree: dict = {}
  for path, v in flat.items():
    node = tree
    *parents, leaf = path.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def save(path: str, variables: dict, meta: dict, encoding: str = 'dense',
         index_bits: int = 8, sparse_collections=('params',),
         zlib_header: bool = False) -> dict:
  """Writes `variables` ({'params', 'batch_stats', 'compress'}); returns the
  bytes per leaf ({'collection/path': n}) and 'file' = the file size.
  zlib_header: deflate the JSON header (for tiny nets it is ~20% of a
  Huffman-coded file); the magic then says so."""
  header = {'meta': meta, 'leaves': {}, 'arrays': []}
  blobs, offset, leaf_bytes = [], 0, {}
  hints = meta.get('leaf_encodings', {})
  for name, leaf in flatten(variables).items():
    coll = name.split('/')[0]
    enc = encoding if coll in sparse_collections else 'dense'
    enc_name, arrays = encode_leaf(leaf, enc, index_bits, hints.get(name))
    header['leaves'][name] = {'encoding': enc_name, 'shape': list(leaf.shape),
                              'dtype': str(leaf.dtype), 'bits': index_bits}
    leaf_bytes[name] = _nbytes(arrays)
    for field, a in arrays.items():
      a = np.ascontiguousarray(a)
      header['arrays'].append({'leaf': name, 'field': field,
                               'dtype': a.dtype.str, 'shape': list(a.shape),
                               'offset': offset})
      blobs.append(a.tobytes())
      offset += a.nbytes
  head = json.dumps(header, separators=(',', ':')).encode()
  magic = MAGIC
  if zlib_header:
    import zlib
    head, magic = zlib.compress(head, 9), MAGIC_ZHEADER
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    f.write(magic + struct.pack('<I', len(head)) + head)
    for b in blobs:
      f.write(b)
  os.replace(tmp, path)
  leaf_bytes['file'] = os.path.getsize(path)
  return leaf_bytes


def load(path: str) -> tuple[dict, dict]:
  """(variables, meta) from a file written by `save`."""
  with open(path, 'rb') as f:
    data = f.read()
  if data[:4] not in (MAGIC, MAGIC_ZHEADER):
    raise ValueError(f'{path} is not a jaxcnn compressed artifact')
  (n,) = struct.unpack('<I', data[4:8])
  head = data[8:8 + n]
  if data[:4] == MAGIC_ZHEADER:
    import zlib
    head = zlib.decompress(head)
  header = json.loads(head)
  body = memoryview(data)[8 + n:]
  fields: dict = {}
  for a in header['arrays']:
    dt = np.dtype(a['dtype'])
    count = int(np.prod(a['shape']))
    arr = np.frombuffer(body, dt, count, a['offset']).reshape(a['shape'])
    fields.setdefault(a['leaf'], {})[a['field']] = arr.copy()
  flat = {}
  for name, info in header['leaves'].items():
    arrays, enc = fields.get(name, {}), info['encoding']
    if enc == 'dense':
      flat[name] = arrays['data'].astype(info['dtype']).reshape(info['shape'])
    elif enc == 'relative':
      flat[name] = decode_relative(arrays, info['shape'], info['bits'])
    elif enc == 'csr':
      flat[name] = decode_csr(arrays, info['shape'])
    elif enc == 'binary':
      from jaxcnn.compress import bitpack
      flat[name] = bitpack.decode_binary(arrays, info['shape'])
    elif enc == 'codebook':
      flat[name] = decode_codebook(arrays, info['shape'])
    elif enc == 'sparse_codebook':
      flat[name] = decode_sparse_codebook(arrays, info['shape'], info['bits'])
    elif enc == 'pq':
      flat[name] = decode_pq(arrays, info['shape'])
    elif enc == 'packed_int':
      flat[name] = decode_packed_int(arrays, info['shape'])
    elif enc == 'huffman':
      from jaxcnn.compress import huffman
      flat[name] = huffman.decode_weights(arrays, info['shape'], info['bits'])
    else:
      raise ValueError(f'unknown encoding {enc!r} in {path}')
  return unflatten(flat), header['meta']
