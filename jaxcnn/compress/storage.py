"""Real compressed artifacts: one file, no pickle, loadable for inference.

The container (framing, CRC-32, format 1 and 2) is container.py's.
The header names every array with its dtype, shape and offset, the model
(registry name + overrides), the method's metadata and each leaf's
encoding. Per-entry overhead is a JSON line, so a small model's file size is
its arrays (an npz adds ~100 zip bytes per array); the framing is 24 bytes.

`load` trusts nothing it reads: the declared lengths must add up to the
file's size, the CRC must match, and every shape, count and decoded size is
checked against the bytes actually present before anything is allocated, so
a damaged or crafted file raises one ArtifactError naming the file and the
problem, never a MemoryError, a traceback or silently wrong weights.
Format 1 files (b'JXCZ' / b'JXCz': no lengths, no checksum) still load,
with the same structural checks and an ArtifactWarning that their bytes are
unverified.

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

from jaxcnn.compress import bitpack, container, huffman
from jaxcnn.compress.encodings import (  # noqa: F401 (re-exported)
    _size,
    _packed_len,
    _need,
    _uint,
    encode_relative,
    decode_relative,
    encode_csr,
    decode_csr,
    index_bits_for,
    pack_bits,
    unpack_bits,
    encode_codebook,
    decode_codebook,
    encode_sparse_codebook,
    decode_sparse_codebook,
    encode_pq,
    decode_pq,
    encode_packed_int,
    decode_packed_int,
    _nbytes,
    encode_leaf)
from jaxcnn.compress.container import (  # noqa: F401 (re-exported)
    MAGIC, MAGIC_ZHEADER, LEGACY_MAGIC, LEGACY_MAGIC_ZHEADER, MAGICS,
    ArtifactError, ArtifactWarning, fail)

# Decoded weights may exceed the file by the compression ratio: Deep
# Compression reaches ~50x, near-empty pruned layers more, so allow 1024x
# with a 64 MiB floor; a crafted 35 KB header cannot ask for GiBs.
MAX_EXPANSION = 1024
MIN_DECODED_CAP = 64 << 20


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
  """Inverse of flatten; ValueError if one path is a prefix of another
  (one leaf would silently replace the other)."""
  tree: dict = {}
  for path, v in flat.items():
    node = tree
    *parents, leaf = path.split('/')
    for p in parents:
      node = node.setdefault(p, {})
      if not isinstance(node, dict):
        raise ValueError(f'leaf paths collide at {path!r}')
    if leaf in node:
      raise ValueError(f'leaf paths collide at {path!r}')
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
  container.write_file(path, json.dumps(header, separators=(',', ':')).encode(),
                       blobs, zlib_header)
  leaf_bytes['file'] = os.path.getsize(path)
  return leaf_bytes


# Fields holding counts, indices or bits must be unsigned ints, weights
# floats; 'data' (dense, packed_int) is any numeric dtype.
_UNSIGNED = frozenset({'gaps', 'idx', 'count', 'cols', 'ptr', 'codes',
                       'bits', 'nbits', 'blob'})
_FLOAT = frozenset({'values', 'codebook', 'alpha', 'codebooks'})
# encoding -> (required fields, optional fields)
_FIELDS = {
    'dense': ({'data'}, set()),
    'relative': ({'values', 'gaps', 'count'}, set()),
    'csr': ({'values', 'cols', 'ptr'}, set()),
    'binary': ({'bits'}, {'alpha'}),
    'codebook': ({'codebook', 'idx'}, set()),
    'sparse_codebook': ({'codebook', 'gaps', 'idx', 'count'}, set()),
    'pq': ({'codebooks', 'codes'}, set()),
    'packed_int': ({'data', 'nbits'}, set()),
    'huffman': ({'blob'}, set()),
}


def _dtype(value) -> np.dtype:
  """A plain numeric dtype, or ValueError (no objects, records, f16...)."""
  try:
    dt = np.dtype(value) if isinstance(value, str) else None
  except TypeError:
    dt = None
  if dt is None or dt.kind not in 'biuf' or dt.itemsize > 8 or dt.fields \
      or dt.subdtype:
    raise ValueError(f'unsupported dtype {value!r}')
  return dt


def _shape(value) -> list:
  if not (isinstance(value, list) and len(value) <= 32 and all(
      type(d) is int and d >= 0 for d in value)):  # bool is not a dim
    raise ValueError(f'bad shape {value!r} (want a list of ints >= 0)')
  return value


def _read_arrays(path: str, specs: list, body: memoryview) -> dict:
  """{leaf: {field: array}}; the arrays must tile the body exactly, in
  order, so every declared size is backed by real bytes."""
  fields: dict = {}
  end = 0
  for i, a in enumerate(specs):
    try:
      if not isinstance(a, dict):
        raise ValueError('not an object')
      dt, shape = _dtype(a.get('dtype')), _shape(a.get('shape'))
      leaf, field, offset = a.get('leaf'), a.get('field'), a.get('offset')
      if not (isinstance(leaf, str) and isinstance(field, str)):
        raise ValueError('leaf and field must be strings')
    except ValueError as e:
      fail(path, f'header array #{i}: {e}')
    nbytes = _size(shape) * dt.itemsize
    if offset != end or nbytes > len(body) - end:
      fail(path, f'array {leaf}:{field} ({nbytes} bytes at offset '
            f'{offset!r}) does not follow the previous array at {end} within '
            f'the {len(body)}-byte body: truncated or corrupt')
    if field in fields.setdefault(leaf, {}):
      fail(path, f'array {leaf}:{field} is listed twice')
    want = 'u' if field in _UNSIGNED else 'f' if field in _FLOAT else dt.kind
    if dt.kind != want:
      fail(path, f'array {leaf}:{field} has dtype {dt} (want kind {want!r})')
    fields[leaf][field] = np.frombuffer(body, dt, _size(shape), end).reshape(
        shape).copy()
    end += nbytes
  if end != len(body):
    fail(path, f'{len(body) - end} body bytes after the last array: '
          'trailing data or a damaged header')
  return fields


def _check_leaves(path: str, leaves: dict, fields: dict, file_size: int):
  """Shapes, dtypes, encodings and fields of every leaf, and the total
  decoded size against the file's, before any leaf is decoded."""
  cap = max(MIN_DECODED_CAP, MAX_EXPANSION * file_size)
  total = 0
  for name, info in leaves.items():
    try:
      if not isinstance(info, dict):
        raise ValueError('not an object')
      enc = info.get('encoding')
      if enc not in _FIELDS:
        raise ValueError(f'unknown encoding {enc!r}; known: '
                         f'{", ".join(_FIELDS)}')
      shape, dt = _shape(info.get('shape')), _dtype(info.get('dtype'))
      if type(info.get('bits')) is not int:
        raise ValueError(f'bits {info.get("bits")!r} is not an int')
      required, optional = _FIELDS[enc]
      have = set(fields.get(name, {}))
      if not required <= have <= required | optional:
        raise ValueError(f'{enc} needs fields {sorted(required)}, the file '
                         f'has {sorted(have)}')
    except ValueError as e:
      fail(path, f'leaf {name}: {e}')
    total += _size(shape) * max(dt.itemsize, 4)  # decoders build fp32
    if total > cap:
      fail(path, f'implausible header: leaf {name} {shape} brings the '
            f'decoded size to {total} bytes, over {cap} for a '
            f'{file_size}-byte file')
  stray = set(fields) - set(leaves)
  if stray:
    fail(path, f'arrays of unknown leaves {sorted(stray)[:5]}')


def _check_binary(arrays: dict, shape) -> None:
  _need(len(shape) >= 2, f'binary needs a >= 2-D leaf, got {list(shape)}')
  want = [shape[-1], bitpack.words_for(_size(shape[:-1]))]
  _need(list(arrays['bits'].shape) == want and (
      'alpha' not in arrays or arrays['alpha'].size == shape[-1]),
        f'bits {list(arrays["bits"].shape)} (want {want}) or alpha do not '
        f'fit shape {list(shape)}')


def _check_huffman(arrays: dict, shape) -> None:
  """The blob's own header (huffman._HEAD) must fit the leaf and blob."""
  blob = arrays['blob'].reshape(-1)
  head = huffman._HEAD  # pylint: disable=protected-access
  _need(blob.size >= head.size, 'huffman blob shorter than its header')
  n, nnz, k, b, gap_bytes = head.unpack_from(blob.tobytes(), 0)
  fixed = head.size + ((1 << b) + 1) // 2 + (k + 1) // 2 + 4 * k \
      if 1 <= b <= 8 else 0
  # Every code advances >= 1 position: no more codes than weights.
  _need(1 <= b <= 8 and 1 <= k <= huffman.MAX_VALUES and nnz <= n
        <= _size(shape) and fixed + gap_bytes <= blob.size,
        f'huffman blob header ({n} codes, {nnz} nonzeros, {k} values, '
        f'{b}-bit gaps, {gap_bytes} gap bytes) does not fit {_size(shape)} '
        f'weights and {blob.size} bytes')


def _decode_leaf(info: dict, arrays: dict) -> np.ndarray:
  enc, shape, bits = info['encoding'], tuple(info['shape']), info['bits']
  if enc == 'dense':
    _need(arrays['data'].size == _size(shape), f'{arrays["data"].size} '
          f'values for shape {list(shape)}')
    return arrays['data'].astype(info['dtype']).reshape(shape)
  if enc == 'relative':
    return decode_relative(arrays, shape, bits)
  if enc == 'csr':
    return decode_csr(arrays, shape)
  if enc == 'binary':
    _check_binary(arrays, shape)
    return bitpack.decode_binary(arrays, shape)
  if enc == 'codebook':
    return decode_codebook(arrays, shape)
  if enc == 'sparse_codebook':
    return decode_sparse_codebook(arrays, shape, bits)
  if enc == 'pq':
    return decode_pq(arrays, shape)
  if enc == 'packed_int':
    return decode_packed_int(arrays, shape)
  _check_huffman(arrays, shape)
  return huffman.decode_weights(arrays, shape, bits)


def load(path: str) -> tuple[dict, dict]:
  """(variables, meta) from a file written by `save`; ArtifactError if the
  file is not one, is damaged, or declares more than it holds."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ArtifactError(f'cannot read artifact {path}: {e}') from None
  return loads(data, path)


def loads(data: bytes, path: str = '<bytes>') -> tuple[dict, dict]:
  """`load` of a file's bytes; `path` names them in errors."""
  header, body = container.read(path, data)
  fields = _read_arrays(path, header['arrays'], body)
  _check_leaves(path, header['leaves'], fields, len(data))
  flat = {}
  for name, info in header['leaves'].items():
    try:
      flat[name] = _decode_leaf(info, fields.get(name, {}))
    # Checked sizes make these the payload's inconsistencies, not bugs.
    except (ValueError, IndexError, KeyError, struct.error) as e:
      fail(path, f'leaf {name} ({info["encoding"]}): {e}')
    if flat[name].shape != tuple(info['shape']):
      fail(path, f'leaf {name} decodes to {flat[name].shape}, header says '
            f'{info["shape"]}')
  try:
    return unflatten(flat), header['meta']
  except ValueError as e:
    fail(path, f'{e} (one leaf path is a prefix of another)')
