""".jxcz artifacts: every damaged or crafted file fails with one
ArtifactError naming the file and the problem, before any large allocation;
never a traceback from deep inside numpy/zlib, a MemoryError, or silently
wrong weights."""
import json
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from jaxcnn.compress import huffman, storage
from jaxcnn.compress.storage import ArtifactError, ArtifactWarning
from jaxcnn.errors import JaxcnnError

_FIXED = struct.Struct('<4sIIQ')


def _leaves():
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


def _save(path, variables, kw):
  kw = dict(kw)
  meta = kw.pop('meta', {'model': 'x'})
  storage.save(str(path), variables, meta, kw.pop('encoding', 'auto'), **kw)
  return str(path)


@pytest.fixture(scope='module')
def artifacts(tmp_path_factory):
  """{encoding: (path, variables)}, each file using that leaf encoding."""
  d = tmp_path_factory.mktemp('jxcz')
  out = {}
  for enc, (variables, kw) in _leaves().items():
    path = _save(d / f'{enc}.jxcz', variables, kw)
    out[enc] = (path, variables)
  return out


def _header(path):
  data = open(path, 'rb').read()
  magic, n_head, _, _ = _FIXED.unpack_from(data)
  head = data[_FIXED.size:_FIXED.size + n_head]
  return json.loads(zlib.decompress(head) if magic == b'JXc2' else head)


def _assert_equal_trees(a, b):
  assert a.keys() == b.keys()
  for k in a:
    if isinstance(a[k], dict):
      _assert_equal_trees(a[k], b[k])
    else:
      assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes()


def test_every_encoding_round_trips_with_checksum(artifacts):
  for enc, (path, variables) in artifacts.items():
    encodings = {v['encoding'] for v in _header(path)['leaves'].values()}
    assert enc in encodings, (enc, encodings)
    loaded, _ = storage.load(path)
    _assert_equal_trees(loaded, variables)
    data = open(path, 'rb').read()
    assert data[:4] in (storage.MAGIC, storage.MAGIC_ZHEADER)
    assert struct.unpack('<I', data[-4:])[0] == zlib.crc32(data[:-4])


def _expect_error(path, *words, data=None):
  with pytest.raises(ArtifactError) as e:
    storage.load(path) if data is None else storage.loads(data, path)
  msg = str(e.value)
  assert path in msg and '\n' not in msg, msg
  assert any(w in msg for w in words), msg
  assert isinstance(e.value, JaxcnnError) and isinstance(e.value, ValueError)
  return msg


def _rewrite(src, dst, data):
  with open(dst, 'wb') as f:
    f.write(data)
  return str(dst)


@pytest.mark.parametrize('cut', [0, 3, 7, 20, 0.5, -5, -1])
def test_truncated_files_are_refused(artifacts, tmp_path, cut):
  for enc, (path, _) in artifacts.items():
    data = open(path, 'rb').read()
    n = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    bad = _rewrite(path, tmp_path / f'{enc}.jxcz', data[:n])
    _expect_error(bad, 'truncated', 'not a jaxcnn')


@pytest.mark.parametrize('extra', [b'\0', b'garbage' * 30, b'\xff' * 4])
def test_trailing_data_is_refused(artifacts, tmp_path, extra):
  for enc, (path, _) in artifacts.items():
    bad = _rewrite(path, tmp_path / f'{enc}.jxcz',
                   open(path, 'rb').read() + extra)
    _expect_error(bad, 'trailing')


@pytest.mark.parametrize('magic', [b'JXCY', b'PK\x03\x04', b'\0\0\0\0',
                                   b'jxc2'])
def test_wrong_magic_is_refused(artifacts, tmp_path, magic):
  path = artifacts['relative'][0]
  bad = _rewrite(path, tmp_path / 'm.jxcz', magic + open(path, 'rb').read()[4:])
  _expect_error(bad, 'not a jaxcnn .jxcz artifact')
  _expect_error(_rewrite(path, tmp_path / 'e.jxcz', b''), 'not a jaxcnn')


def test_a_flipped_bit_anywhere_is_detected(artifacts, tmp_path):
  """One bit of every byte (framing, JSON header, payload, CRC) of each
  file: the old loader returned wrong weights for payload flips."""
  for enc, (path, _) in artifacts.items():
    data = bytearray(open(path, 'rb').read())
    for i in range(len(data)):
      flipped = bytearray(data)
      flipped[i] ^= 1 << (i % 8)
      _expect_error(path, 'checksum mismatch', 'truncated', 'trailing',
                    'not a jaxcnn', 'header', data=bytes(flipped))
  # The same through a file, at a few places.
  bad = str(tmp_path / 'flip.jxcz')
  for i in (0, 5, 13, 30, len(data) // 2, len(data) - 1):
    flipped = bytearray(data)
    flipped[i] ^= 0x10
    _expect_error(_rewrite(path, bad, bytes(flipped)), 'checksum mismatch',
                  'truncated', 'trailing', 'not a jaxcnn')


def test_unreadable_path_is_an_artifact_error(tmp_path):
  _expect_error(str(tmp_path / 'missing.jxcz'), 'cannot read')
  _expect_error(str(tmp_path), 'cannot read')


# ---- crafted files: valid framing and CRC, a lying header ----

def _craft(path, header, body=b'', zheader=False, n_raw=None,
           magic=None):
  raw = json.dumps(header).encode() if isinstance(header, dict) else header
  head = zlib.compress(raw) if zheader else raw
  magic = magic or (b'JXc2' if zheader else b'JXC2')
  data = _FIXED.pack(magic, len(head), len(raw) if n_raw is None else n_raw,
                     len(body)) + head + body
  with open(path, 'wb') as f:
    f.write(data + struct.pack('<I', zlib.crc32(data)))
  return str(path)


def _dense(shape, data_shape=None, dtype='<f4', leaf_dtype='float32',
           offset=0):
  return {'meta': {}, 'leaves': {'params/w': {
      'encoding': 'dense', 'shape': shape, 'dtype': leaf_dtype, 'bits': 8}},
          'arrays': [{'leaf': 'params/w', 'field': 'data', 'dtype': dtype,
                      'shape': data_shape if data_shape is not None
                      else shape, 'offset': offset}]}


def _leaf(enc, shape, arrays, bits=8):
  """Header of one leaf `enc` with `arrays` = [(field, dtype, shape)]."""
  specs, off = [], 0
  for field, dt, shp in arrays:
    specs.append({'leaf': 'params/w', 'field': field, 'dtype': dt,
                  'shape': shp, 'offset': off})
    off += int(np.prod(shp)) * np.dtype(dt).itemsize
  return {'meta': {}, 'leaves': {'params/w': {
      'encoding': enc, 'shape': shape, 'dtype': 'float32', 'bits': bits}},
          'arrays': specs}, b'\1' * off


def _bounded_load(path, *words, limit=96 << 20):
  """The error comes without allocating more than `limit` bytes."""
  tracemalloc.start()
  try:
    msg = _expect_error(path, *words)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < limit, (peak, msg)
  return msg


HUGE = [1 << 20, 1 << 20]   # 4 TiB of float32

CRAFTED = {
    # Declared array sizes beyond the body.
    'huge array shape': (_dense(HUGE), b'\0' * 64, 'does not follow'),
    'huge leaf, small data': (_dense(HUGE, [16]), b'\0' * 64, 'implausible'),
    'tens of GiB leaf': (_dense([1 << 16, 1 << 16], [4]), b'\0' * 16,
                         'implausible'),
    'negative dim': (_dense([-4, 4]), b'\0' * 64, 'bad shape'),
    'negative leaf dim': (_dense([-4, -4], [16]), b'\0' * 64, 'bad shape'),
    'float dim': (_dense([2.5, 4]), b'\0' * 40, 'bad shape'),
    'string dim': (_dense(['4', 4]), b'\0' * 64, 'bad shape'),
    'bool dim': (_dense([True, 16]), b'\0' * 64, 'bad shape'),
    'null shape': (_dense(None, [16]), b'\0' * 64, 'bad shape'),
    'object dtype': (_dense([4], dtype='|O'), b'\0' * 32, 'unsupported dtype'),
    'unicode dtype': (_dense([4], dtype='<U8'), b'\0' * 128,
                      'unsupported dtype'),
    'void dtype': (_dense([4], dtype='|V8'), b'\0' * 32, 'unsupported dtype'),
    'sub-array dtype': (_dense([4], dtype='(1000000,)f4'), b'\0' * 16,
                        'unsupported dtype'),
    'nonsense dtype': (_dense([4], dtype='nope'), b'\0' * 16,
                       'unsupported dtype'),
    'numeric dtype': (_dense([4], dtype=7), b'\0' * 16, 'unsupported dtype'),
    'bad leaf dtype': (_dense([4], leaf_dtype='object'), b'\0' * 16,
                       'unsupported dtype'),
    'offset past body': (_dense([4], offset=1 << 40), b'\0' * 16,
                         'does not follow'),
    'negative offset': (_dense([4], offset=-16), b'\0' * 16,
                        'does not follow'),
    'unused body bytes': (_dense([4]), b'\0' * 20, 'after the last array'),
    'count in float': (_leaf('relative', [4, 4], [
        ('values', '<f4', [2]), ('gaps', '|u1', [2]),
        ('count', '<f4', [1])])[0], b'\0' * 14, 'want kind'),
}


@pytest.mark.parametrize('case', sorted(CRAFTED))
def test_crafted_header_is_refused_before_allocating(tmp_path, case):
  header, body, words = CRAFTED[case]
  _bounded_load(_craft(tmp_path / 'c.jxcz', header, body), words)


def _count_u32(*values):
  return np.asarray(values, np.uint32).tobytes()


def test_encoding_counts_that_lie_are_refused(tmp_path):
  """Payload-declared counts: each would allocate from the header's word
  or write outside the leaf."""
  p = str(tmp_path / 'c.jxcz')
  # relative: 2^31 entries declared, 2 stored.
  h, _ = _leaf('relative', [4, 4], [('values', '<f4', [2]),
                                    ('gaps', '|u1', [2]),
                                    ('count', '<u4', [1])])
  body = np.ones(2, np.float32).tobytes() + b'\1\1' + _count_u32(1 << 31)
  _bounded_load(_craft(p, h, body), 'entries need')
  # relative: a 0 gap would write position -1 (the last weight) silently.
  body = np.ones(2, np.float32).tobytes() + b'\0\1' + _count_u32(2)
  _bounded_load(_craft(p, h, body), 'outside')
  # relative: gaps running past the leaf.
  body = np.ones(2, np.float32).tobytes() + b'\xff\1' + _count_u32(2)
  _bounded_load(_craft(p, h, body), 'outside')
  # sparse_codebook: 2^32-1 codes for a 16-weight leaf.
  h, _ = _leaf('sparse_codebook', [4, 4], [
      ('codebook', '<f4', [1]), ('gaps', '|u1', [1]), ('idx', '|u1', [1]),
      ('count', '<u4', [2])])
  body = (np.ones(1, np.float32).tobytes() + b'\1\0' +
          _count_u32((1 << 32) - 1, 1))
  _bounded_load(_craft(p, h, body), 'do not fit')
  # codebook: an empty codebook.
  h, body = _leaf('codebook', [4, 4], [('codebook', '<f4', [0]),
                                       ('idx', '|u1', [2])])
  _bounded_load(_craft(p, h, body), 'codebook')
  # csr: row pointers for the wrong number of rows.
  h, body = _leaf('csr', [4, 4], [('values', '<f4', [1]),
                                  ('cols', '|u1', [1]), ('ptr', '|u1', [2])])
  _bounded_load(_craft(p, h, body), 'row pointers')
  # pq: codebooks that do not tile the rows.
  h, body = _leaf('pq', [8, 4], [('codebooks', '<f4', [3, 2, 2]),
                                 ('codes', '|u1', [2])])
  _bounded_load(_craft(p, h, body), 'do not fit')
  # packed_int: 9-bit values.
  h, body = _leaf('packed_int', [4, 4], [('data', '|i1', [18]),
                                         ('nbits', '|u1', [1])])
  _bounded_load(_craft(p, h, body), 'nbits', 'unsigned', 'want kind',
                'do not fit')
  # binary: sign words for another shape.
  h, body = _leaf('binary', [3, 3, 2, 6], [('bits', '<u4', [6, 2])])
  _bounded_load(_craft(p, h, body), 'do not fit')


def test_huffman_blob_that_lies_is_refused(tmp_path):
  head = huffman._HEAD
  p = str(tmp_path / 'c.jxcz')
  for n, nnz, k, b, gap_bytes in [(1 << 31, 1, 1, 4, 0),   # codes > weights
                                  (4, 8, 1, 4, 0),         # nnz > codes
                                  (4, 2, 0, 4, 0),         # empty codebook
                                  (4, 2, 1, 40, 0),        # 40-bit gaps
                                  (4, 2, 1, 4, 1 << 30)]:  # stream > blob
    blob = head.pack(n, nnz, k, b, gap_bytes) + b'\0' * 16
    h, _ = _leaf('huffman', [4, 4], [('blob', '|u1', [len(blob)])])
    _bounded_load(_craft(p, h, blob), 'huffman blob')


def test_structural_lies_are_refused(tmp_path):
  p = str(tmp_path / 'c.jxcz')
  h, body = _leaf('dense', [4], [('data', '<f4', [4])])
  cases = [
      (dict(h, leaves={'params/w': dict(h['leaves']['params/w'],
                                        encoding='zip')}), 'unknown encoding'),
      (dict(h, arrays=h['arrays'] * 2), 'does not follow'),
      (dict(h, leaves={}), 'unknown leaves'),
      (dict(h, leaves={'params/w': dict(h['leaves']['params/w'],
                                        bits='8')}), 'bits'),
      ({'meta': {}, 'arrays': []}, "lacks its 'meta'"),
      (dict(h, arrays=[dict(h['arrays'][0], field='values')]), 'needs fields'),
  ]
  for header, words in cases:
    _bounded_load(_craft(p, header, body), words)
  # Two leaves where one path is a prefix of the other.
  h2, body2 = _leaf('dense', [4], [('data', '<f4', [4])])
  h2['leaves']['params'] = h2['leaves']['params/w']
  h2['arrays'].append(dict(h2['arrays'][0], leaf='params', offset=16))
  _bounded_load(_craft(p, h2, body2 * 2), 'collide')


@pytest.mark.parametrize('head', [b'{"meta": ', b'\xff\xfe', b'[' * 100000,
                                  b'[]', b'"x"', b'null'])
def test_header_that_is_not_the_json_object_is_refused(tmp_path, head):
  _bounded_load(_craft(tmp_path / 'c.jxcz', head), 'header')


def test_header_longer_than_the_file_is_refused(tmp_path):
  good = _craft(tmp_path / 'g.jxcz', *_leaf('dense', [4], [
      ('data', '<f4', [4])]))
  data = bytearray(open(good, 'rb').read())
  for n_head in (len(data), 1 << 31, (1 << 32) - 1):
    struct.pack_into('<I', data, 4, n_head)
    _rewrite(good, tmp_path / 'b.jxcz', bytes(data))
    _bounded_load(str(tmp_path / 'b.jxcz'), 'truncated')
  # Plain header: stored and JSON lengths must agree.
  h, body = _leaf('dense', [4], [('data', '<f4', [4])])
  _bounded_load(_craft(tmp_path / 'c.jxcz', h, body, n_raw=5), 'header length')


def _bomb(mib):
  """A zlib stream of `mib` MiB of spaces, built without the MiBs."""
  z = zlib.compressobj(9)
  chunk = b' ' * (1 << 20)
  return b''.join([z.compress(b'{}')] + [z.compress(chunk) for _ in
                                          range(mib)] + [z.flush()])


def test_zlib_header_bomb_is_refused(tmp_path):
  bomb = _bomb(80)
  p = str(tmp_path / 'bomb.jxcz')
  for n_raw, words in [(80 << 20, 'implausible'),   # honest but too big
                       (1 << 31, 'implausible'),
                       (100, 'does not inflate'),     # declares small
                       (0, 'does not inflate')]:
    data = _FIXED.pack(b'JXc2', len(bomb), n_raw, 0) + bomb
    with open(p, 'wb') as f:
      f.write(data + struct.pack('<I', zlib.crc32(data)))
    _bounded_load(p, words)
  # Declared right, but the stream is not zlib / has bytes after its end.
  h = json.dumps(_leaf('dense', [4], [('data', '<f4', [4])])[0]).encode()
  for z in (b'\x78\x9c' + b'\0' * 30, zlib.compress(h) + b'junk'):
    data = _FIXED.pack(b'JXc2', len(z), len(h), 16) + z + b'\0' * 16
    with open(p, 'wb') as f:
      f.write(data + struct.pack('<I', zlib.crc32(data)))
    _bounded_load(p, 'compressed header')


# ---- format 1 (no checksum): still loads, with a note; same bounds ----

def _legacy(path, src, z=False):
  """`src` (format 2) rewritten as format 1: magic, u32 length, header,
  body."""
  data = open(src, 'rb').read()
  magic, n_head, _, n_body = _FIXED.unpack_from(data)
  head = data[_FIXED.size:_FIXED.size + n_head]
  raw = zlib.decompress(head) if magic == b'JXc2' else head
  head = zlib.compress(raw) if z else raw
  body = data[_FIXED.size + n_head:_FIXED.size + n_head + n_body]
  with open(path, 'wb') as f:
    f.write((b'JXCz' if z else b'JXCZ') + struct.pack('<I', len(head)) + head
            + body)
  return str(path)


def test_format1_files_load_with_a_warning(artifacts, tmp_path):
  for enc, (path, variables) in artifacts.items():
    for z in (False, True):
      old = _legacy(tmp_path / f'{enc}{z}.jxcz', path, z)
      with pytest.warns(ArtifactWarning, match='no checksum'):
        loaded, _ = storage.load(old)
      _assert_equal_trees(loaded, variables)


def test_format1_damage_is_still_refused(artifacts, tmp_path):
  old = _legacy(tmp_path / 'old.jxcz', artifacts['csr'][0])
  data = open(old, 'rb').read()
  bad = str(tmp_path / 'bad.jxcz')
  with pytest.warns(ArtifactWarning):
    for cut in (len(data) - 1, len(data) // 2, 12):
      _rewrite(old, bad, data[:cut])
      _expect_error(bad, 'truncated', 'does not follow', 'header')
    _rewrite(old, bad, data + b'junk')
    _expect_error(bad, 'after the last array')
    _rewrite(old, bad, data[:4] + struct.pack('<I', 1 << 31) + data[8:])
    _expect_error(bad, 'exceeds')
    bomb = _bomb(128)   # no declared size: inflation stops at the cap
    _rewrite(old, bad, b'JXCz' + struct.pack('<I', len(bomb)) + bomb)
    _bounded_load(bad, 'does not inflate', limit=160 << 20)
