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
Decoding reproduces every stored float bit for bit, so the loaded net's
logits equal the in-memory net's.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

MAGIC = b'JXCZ'


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


def _nbytes(arrays: dict) -> int:
  return sum(a.nbytes for a in arrays.values())


def encode_leaf(w: np.ndarray, encoding: str, bits: int):
  """(encoding name, arrays) for one leaf."""
  w = np.asarray(w)
  options = {'dense': {'data': w}}
  if w.dtype == np.float32 and w.size > 1 and encoding != 'dense':
    if encoding in ('auto', 'relative'):
      options['relative'] = encode_relative(w, bits)
    if encoding in ('auto', 'csr'):
      options['csr'] = encode_csr(w)
    if encoding != 'auto':
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
         index_bits: int = 8, sparse_collections=('params',)) -> dict:
  """Writes `variables` ({'params', 'batch_stats', 'compress'}); returns the
  bytes per leaf ({'collection/path': n}) and 'file' = the file size."""
  header = {'meta': meta, 'leaves': {}, 'arrays': []}
  blobs, offset, leaf_bytes = [], 0, {}
  for name, leaf in flatten(variables).items():
    coll = name.split('/')[0]
    enc = encoding if coll in sparse_collections else 'dense'
    enc_name, arrays = encode_leaf(leaf, enc, index_bits)
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
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    f.write(MAGIC + struct.pack('<I', len(head)) + head)
    for b in blobs:
      f.write(b)
  os.replace(tmp, path)
  leaf_bytes['file'] = os.path.getsize(path)
  return leaf_bytes


def load(path: str) -> tuple[dict, dict]:
  """(variables, meta) from a file written by `save`."""
  with open(path, 'rb') as f:
    data = f.read()
  if data[:4] != MAGIC:
    raise ValueError(f'{path} is not a jaxcnn compressed artifact')
  (n,) = struct.unpack('<I', data[4:8])
  header = json.loads(data[8:8 + n])
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
    else:
      raise ValueError(f'unknown encoding {enc!r} in {path}')
  return unflatten(flat), header['meta']
