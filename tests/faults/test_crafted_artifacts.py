""".jxcz artifacts with valid framing and CRC but a lying header: every
one fails with one ArtifactError naming the file and the problem, before
any large allocation (no MemoryError, no multi-GiB buffer)."""
import json
import struct
import zlib

import numpy as np
import pytest

from jaxcnn.compress import huffman
from tests.faults.artifact_checks import (
    FIXED, bounded_load, count_u32, craft, leaf, rewrite, zlib_bomb)


def _dense(shape, data_shape=None, dtype='<f4', leaf_dtype='float32',
           offset=0):
  return {'meta': {}, 'leaves': {'params/w': {
      'encoding': 'dense', 'shape': shape, 'dtype': leaf_dtype, 'bits': 8}},
          'arrays': [{'leaf': 'params/w', 'field': 'data', 'dtype': dtype,
                      'shape': data_shape if data_shape is not None
                      else shape, 'offset': offset}]}


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
    'count in float': (leaf('relative', [4, 4], [
        ('values', '<f4', [2]), ('gaps', '|u1', [2]),
        ('count', '<f4', [1])])[0], b'\0' * 14, 'want kind'),
}


@pytest.mark.parametrize('case', sorted(CRAFTED))
def test_crafted_header_is_refused_before_allocating(tmp_path, case):
  header, body, words = CRAFTED[case]
  bounded_load(craft(tmp_path / 'c.jxcz', header, body), words)


def test_encoding_counts_that_lie_are_refused(tmp_path):
  """Payload-declared counts: each would allocate from the header's word
  or write outside the leaf."""
  p = str(tmp_path / 'c.jxcz')
  # relative: 2^31 entries declared, 2 stored.
  h, _ = leaf('relative', [4, 4], [('values', '<f4', [2]),
                                    ('gaps', '|u1', [2]),
                                    ('count', '<u4', [1])])
  body = np.ones(2, np.float32).tobytes() + b'\1\1' + count_u32(1 << 31)
  bounded_load(craft(p, h, body), 'entries need')
  # relative: a 0 gap would write position -1 (the last weight) silently.
  body = np.ones(2, np.float32).tobytes() + b'\0\1' + count_u32(2)
  bounded_load(craft(p, h, body), 'outside')
  # relative: gaps running past the leaf.
  body = np.ones(2, np.float32).tobytes() + b'\xff\1' + count_u32(2)
  bounded_load(craft(p, h, body), 'outside')
  # sparse_codebook: 2^32-1 codes for a 16-weight leaf.
  h, _ = leaf('sparse_codebook', [4, 4], [
      ('codebook', '<f4', [1]), ('gaps', '|u1', [1]), ('idx', '|u1', [1]),
      ('count', '<u4', [2])])
  body = (np.ones(1, np.float32).tobytes() + b'\1\0' +
          count_u32((1 << 32) - 1, 1))
  bounded_load(craft(p, h, body), 'do not fit')
  # codebook: an empty codebook.
  h, body = leaf('codebook', [4, 4], [('codebook', '<f4', [0]),
                                       ('idx', '|u1', [2])])
  bounded_load(craft(p, h, body), 'codebook')
  # csr: row pointers for the wrong number of rows.
  h, body = leaf('csr', [4, 4], [('values', '<f4', [1]),
                                  ('cols', '|u1', [1]), ('ptr', '|u1', [2])])
  bounded_load(craft(p, h, body), 'row pointers')
  # pq: codebooks that do not tile the rows.
  h, body = leaf('pq', [8, 4], [('codebooks', '<f4', [3, 2, 2]),
                                 ('codes', '|u1', [2])])
  bounded_load(craft(p, h, body), 'do not fit')
  # packed_int: 9-bit values.
  h, body = leaf('packed_int', [4, 4], [('data', '|i1', [18]),
                                         ('nbits', '|u1', [1])])
  bounded_load(craft(p, h, body), 'nbits', 'unsigned', 'want kind',
                'do not fit')
  # binary: sign words for another shape.
  h, body = leaf('binary', [3, 3, 2, 6], [('bits', '<u4', [6, 2])])
  bounded_load(craft(p, h, body), 'do not fit')


def test_huffman_blob_that_lies_is_refused(tmp_path):
  head = huffman._HEAD
  p = str(tmp_path / 'c.jxcz')
  for n, nnz, k, b, gap_bytes in [(1 << 31, 1, 1, 4, 0),   # codes > weights
                                  (4, 8, 1, 4, 0),         # nnz > codes
                                  (4, 2, 0, 4, 0),         # empty codebook
                                  (4, 2, 1, 40, 0),        # 40-bit gaps
                                  (4, 2, 1, 4, 1 << 30)]:  # stream > blob
    blob = head.pack(n, nnz, k, b, gap_bytes) + b'\0' * 16
    h, _ = leaf('huffman', [4, 4], [('blob', '|u1', [len(blob)])])
    bounded_load(craft(p, h, blob), 'huffman blob')


def test_structural_lies_are_refused(tmp_path):
  p = str(tmp_path / 'c.jxcz')
  h, body = leaf('dense', [4], [('data', '<f4', [4])])
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
    bounded_load(craft(p, header, body), words)
  # Two leaves where one path is a prefix of the other.
  h2, body2 = leaf('dense', [4], [('data', '<f4', [4])])
  h2['leaves']['params'] = h2['leaves']['params/w']
  h2['arrays'].append(dict(h2['arrays'][0], leaf='params', offset=16))
  bounded_load(craft(p, h2, body2 * 2), 'collide')


@pytest.mark.parametrize('head', [b'{"meta": ', b'\xff\xfe', b'[' * 100000,
                                  b'[]', b'"x"', b'null'])
def test_header_that_is_not_the_json_object_is_refused(tmp_path, head):
  bounded_load(craft(tmp_path / 'c.jxcz', head), 'header')


def test_header_longer_than_the_file_is_refused(tmp_path):
  good = craft(tmp_path / 'g.jxcz', *leaf('dense', [4], [
      ('data', '<f4', [4])]))
  data = bytearray(open(good, 'rb').read())
  for n_head in (len(data), 1 << 31, (1 << 32) - 1):
    struct.pack_into('<I', data, 4, n_head)
    rewrite(good, tmp_path / 'b.jxcz', bytes(data))
    bounded_load(str(tmp_path / 'b.jxcz'), 'truncated')
  # Plain header: stored and JSON lengths must agree.
  h, body = leaf('dense', [4], [('data', '<f4', [4])])
  bounded_load(craft(tmp_path / 'c.jxcz', h, body, n_raw=5), 'header length')


def test_zlib_header_bomb_is_refused(tmp_path):
  bomb = zlib_bomb(80)
  p = str(tmp_path / 'bomb.jxcz')
  for n_raw, words in [(80 << 20, 'implausible'),   # honest but too big
                       (1 << 31, 'implausible'),
                       (100, 'does not inflate'),     # declares small
                       (0, 'does not inflate')]:
    data = FIXED.pack(b'JXc2', len(bomb), n_raw, 0) + bomb
    with open(p, 'wb') as f:
      f.write(data + struct.pack('<I', zlib.crc32(data)))
    bounded_load(p, words)
  # Declared right, but the stream is not zlib / has bytes after its end.
  h = json.dumps(leaf('dense', [4], [('data', '<f4', [4])])[0]).encode()
  for z in (b'\x78\x9c' + b'\0' * 30, zlib.compress(h) + b'junk'):
    data = FIXED.pack(b'JXc2', len(z), len(h), 16) + z + b'\0' * 16
    with open(p, 'wb') as f:
      f.write(data + struct.pack('<I', zlib.crc32(data)))
    bounded_load(p, 'compressed header')
