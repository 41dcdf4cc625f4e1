"""Helpers shared by the .jxcz artifact fault tests (test_artifacts.py:
framing and format 1; test_crafted_artifacts.py: lying headers): small
trees in every leaf encoding, the fixed header, crafted files, and the
one-line, bounded-allocation ArtifactError check."""
import json
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from jaxcnn.compress import storage
from jaxcnn.compress.storage import ArtifactError
from jaxcnn.errors import JaxcnnError

FIXED = struct.Struct('<4sIIQ')


def leaves():
  """One small tree per encoding load must decode: (variables, save kw)."""
  rng = np.random.default_rng(0)
  sparse = rng.normal(size=(12, 10)).astype(np.float32)
  sparse[rng.random(sparse.shape) < 0.85] = 0
  shared = np.asarray([-0.5, 0.25, 1.0, 2.0], np.float32)[
      rng.integers(0, 4, (12, 10))]
  sparse_shared = np.where(sparse != 0, shared, 0).astype(np.float32)
  alpha = np.abs(rng.normal(size=6)).astype(np.float32) + 0.1
  signs = np.where(rng.random((3, 3, 2, 6)) < 0.5, -1, 1).astype(np.float32)
  bias = rng.normal(size=10).astype(np.float32)
  # Huffman wins on a skewed, sparse, shared kernel.
  r = np.random.default_rng(1)
  coded = np.zeros((100, 50), np.float32)
  keep = r.random(coded.shape) < 0.08
  coded[keep] = r.normal(size=16).astype(np.float32)[r.choice(
      16, keep.sum(), p=r.dirichlet(np.full(16, 0.3)))]
  return {
      'dense': ({'params': {'fc': {'kernel': sparse, 'bias': bias}}},
                {'encoding': 'dense'}),
      'relative': ({'params': {'fc': {'kernel': sparse}}},
                   {'encoding': 'relative', 'index_bits': 4}),
      'csr': ({'params': {'fc': {'kernel': sparse}}}, {'encoding': 'csr'}),
      'codebook': ({'params': {'fc': {'kernel': shared}}}, {}),
      'sparse_codebook': ({'params': {'fc': {'kernel': sparse_shared}}}, {}),
      'packed_int': ({'params': {'fc': {'kernel': rng.integers(
          -7, 8, (12, 10)).astype(np.int8)}}}, {}),
      'binary': ({'params': {'conv': {'kernel': signs * alpha}}},
                 {'encoding': 'binary'}),
      'pq': ({'params': {'fc': {'kernel': sparse[:8]}}},
             {'meta': {'leaf_encodings': {'params/fc/kernel': {
                 'encoding': 'pq', 'sub_dim': 2}}}}),
      'huffman': ({'params': {'fc': {'kernel': coded},
                              'bn': {'mean': bias}}},
                  {'encoding': 'huffman', 'zlib_header': True}),
  }


def save(path, variables, kw):
  kw = dict(kw)
  meta = kw.pop('meta', {'model': 'x'})
  storage.save(str(path), variables, meta, kw.pop('encoding', 'auto'), **kw)
  return str(path)


def header(path):
  data = open(path, 'rb').read()
  magic, n_head, _, _ = FIXED.unpack_from(data)
  head = data[FIXED.size:FIXED.size + n_head]
  return json.loads(zlib.decompress(head) if magic == b'JXc2' else head)


def assert_equal_trees(a, b):
  assert a.keys() == b.keys()
  for k in a:
    if isinstance(a[k], dict):
      assert_equal_trees(a[k], b[k])
    else:
      assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes()


def expect_error(path, *words, data=None):
  with pytest.raises(ArtifactError) as e:
    storage.load(path) if data is None else storage.loads(data, path)
  msg = str(e.value)
  assert path in msg and '\n' not in msg, msg
  assert any(w in msg for w in words), msg
  assert isinstance(e.value, JaxcnnError) and isinstance(e.value, ValueError)
  return msg


def rewrite(src, dst, data):
  with open(dst, 'wb') as f:
    f.write(data)
  return str(dst)


def craft(path, header, body=b'', zheader=False, n_raw=None,
           magic=None):
  raw = json.dumps(header).encode() if isinstance(header, dict) else header
  head = zlib.compress(raw) if zheader else raw
  magic = magic or (b'JXc2' if zheader else b'JXC2')
  data = FIXED.pack(magic, len(head), len(raw) if n_raw is None else n_raw,
                     len(body)) + head + body
  with open(path, 'wb') as f:
    f.write(data + struct.pack('<I', zlib.crc32(data)))
  return str(path)


def leaf(enc, shape, arrays, bits=8):
  """Header of one leaf `enc` with `arrays` = [(field, dtype, shape)]."""
  specs, off = [], 0
  for field, dt, shp in arrays:
    specs.append({'leaf': 'params/w', 'field': field, 'dtype': dt,
                  'shape': shp, 'offset': off})
    off += int(np.prod(shp)) * np.dtype(dt).itemsize
  return {'meta': {}, 'leaves': {'params/w': {
      'encoding': enc, 'shape': shape, 'dtype': 'float32', 'bits': bits}},
          'arrays': specs}, b'\1' * off


def bounded_load(path, *words, limit=96 << 20):
  """The error comes without allocating more than `limit` bytes."""
  tracemalloc.start()
  try:
    msg = expect_error(path, *words)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < limit, (peak, msg)
  return msg


def count_u32(*values):
  return np.asarray(values, np.uint32).tobytes()


def zlib_bomb(mib):
  """A zlib stream of `mib` MiB of spaces, built without the MiBs."""
  z = zlib.compressobj(9)
  chunk = b' ' * (1 << 20)
  return b''.join([z.compress(b'{}')] + [z.compress(chunk) for _ in
                                          range(mib)] + [z.flush()])
