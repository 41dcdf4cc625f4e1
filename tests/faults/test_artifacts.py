""".jxcz artifacts, framing: every encoding round-trips with its
checksum; truncated, padded, re-magicked or bit-flipped files and format-1
files (no checksum) fail with one ArtifactError naming the file and the
problem, never a traceback from deep inside numpy/zlib or silently wrong
weights. Crafted headers: test_crafted_artifacts.py."""
import struct
import zlib

import pytest

from jaxcnn.compress import storage
from jaxcnn.compress.storage import ArtifactWarning
from tests.faults.artifact_checks import (
    FIXED, assert_equal_trees, bounded_load, expect_error, header, leaves,
    rewrite, save, zlib_bomb)


@pytest.fixture(scope='module')
def artifacts(tmp_path_factory):
  """{encoding: (path, variables)}, each file using that leaf encoding."""
  d = tmp_path_factory.mktemp('jxcz')
  out = {}
  for enc, (variables, kw) in leaves().items():
    path = save(d / f'{enc}.jxcz', variables, kw)
    out[enc] = (path, variables)
  return out


def test_every_encoding_round_trips_with_checksum(artifacts):
  for enc, (path, variables) in artifacts.items():
    encodings = {v['encoding'] for v in header(path)['leaves'].values()}
    assert enc in encodings, (enc, encodings)
    loaded, _ = storage.load(path)
    assert_equal_trees(loaded, variables)
    data = open(path, 'rb').read()
    assert data[:4] in (storage.MAGIC, storage.MAGIC_ZHEADER)
    assert struct.unpack('<I', data[-4:])[0] == zlib.crc32(data[:-4])


@pytest.mark.parametrize('cut', [0, 3, 7, 20, 0.5, -5, -1])
def test_truncated_files_are_refused(artifacts, tmp_path, cut):
  for enc, (path, _) in artifacts.items():
    data = open(path, 'rb').read()
    n = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    bad = rewrite(path, tmp_path / f'{enc}.jxcz', data[:n])
    expect_error(bad, 'truncated', 'not a jaxcnn')


@pytest.mark.parametrize('extra', [b'\0', b'garbage' * 30, b'\xff' * 4])
def test_trailing_data_is_refused(artifacts, tmp_path, extra):
  for enc, (path, _) in artifacts.items():
    bad = rewrite(path, tmp_path / f'{enc}.jxcz',
                   open(path, 'rb').read() + extra)
    expect_error(bad, 'trailing')


@pytest.mark.parametrize('magic', [b'JXCY', b'PK\x03\x04', b'\0\0\0\0',
                                   b'jxc2'])
def test_wrong_magic_is_refused(artifacts, tmp_path, magic):
  path = artifacts['relative'][0]
  bad = rewrite(path, tmp_path / 'm.jxcz', magic + open(path, 'rb').read()[4:])
  expect_error(bad, 'not a jaxcnn .jxcz artifact')
  expect_error(rewrite(path, tmp_path / 'e.jxcz', b''), 'not a jaxcnn')


def test_a_flipped_bit_anywhere_is_detected(artifacts, tmp_path):
  """One bit of every byte (framing, JSON header, payload, CRC) of each
  file: the old loader returned wrong weights for payload flips."""
  for enc, (path, _) in artifacts.items():
    data = bytearray(open(path, 'rb').read())
    for i in range(len(data)):
      flipped = bytearray(data)
      flipped[i] ^= 1 << (i % 8)
      expect_error(path, 'checksum mismatch', 'truncated', 'trailing',
                    'not a jaxcnn', 'header', data=bytes(flipped))
  # The same through a file, at a few places.
  bad = str(tmp_path / 'flip.jxcz')
  for i in (0, 5, 13, 30, len(data) // 2, len(data) - 1):
    flipped = bytearray(data)
    flipped[i] ^= 0x10
    expect_error(rewrite(path, bad, bytes(flipped)), 'checksum mismatch',
                  'truncated', 'trailing', 'not a jaxcnn')


def test_unreadable_path_is_an_artifact_error(tmp_path):
  expect_error(str(tmp_path / 'missing.jxcz'), 'cannot read')
  expect_error(str(tmp_path), 'cannot read')


# ---- format 1 (no checksum): still loads, with a note; same bounds ----

def _legacy(path, src, z=False):
  """`src` (format 2) rewritten as format 1: magic, u32 length, header,
  body."""
  data = open(src, 'rb').read()
  magic, n_head, _, n_body = FIXED.unpack_from(data)
  head = data[FIXED.size:FIXED.size + n_head]
  raw = zlib.decompress(head) if magic == b'JXc2' else head
  head = zlib.compress(raw) if z else raw
  body = data[FIXED.size + n_head:FIXED.size + n_head + n_body]
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
      assert_equal_trees(loaded, variables)


def test_format1_damage_is_still_refused(artifacts, tmp_path):
  old = _legacy(tmp_path / 'old.jxcz', artifacts['csr'][0])
  data = open(old, 'rb').read()
  bad = str(tmp_path / 'bad.jxcz')
  with pytest.warns(ArtifactWarning):
    for cut in (len(data) - 1, len(data) // 2, 12):
      rewrite(old, bad, data[:cut])
      expect_error(bad, 'truncated', 'does not follow', 'header')
    rewrite(old, bad, data + b'junk')
    expect_error(bad, 'after the last array')
    rewrite(old, bad, data[:4] + struct.pack('<I', 1 << 31) + data[8:])
    expect_error(bad, 'exceeds')
    bomb = zlib_bomb(128)   # no declared size: inflation stops at the cap
    rewrite(old, bad, b'JXCz' + struct.pack('<I', len(bomb)) + bomb)
    bounded_load(bad, 'does not inflate', limit=160 << 20)
