"""The .jxcz container: framing, checksum and the JSON header, nothing about
what the arrays mean (storage.py encodes and decodes the leaves).

Format 2, all little-endian: b'JXC2' (b'JXc2': zlib-compressed JSON header),
uint32 stored header bytes, uint32 JSON header bytes, uint64 body bytes, the
header, the body (raw array bytes back to back), uint32 CRC-32 of everything
before it: 24 bytes of framing. Format 1 (b'JXCZ' / b'JXCz': no lengths, no
checksum) is read with an ArtifactWarning that its bytes are unverified.
Every declared length is checked against the bytes present before anything
is inflated or allocated.
"""
from __future__ import annotations

import json
import os
import struct
import warnings
import zlib

from jaxcnn.errors import DataFormatError

MAGIC = b'JXC2'
MAGIC_ZHEADER = b'JXc2'  # the same, with a zlib-compressed JSON header
LEGACY_MAGIC = b'JXCZ'   # format 1: no lengths, no checksum
LEGACY_MAGIC_ZHEADER = b'JXCz'
MAGICS = (MAGIC, MAGIC_ZHEADER, LEGACY_MAGIC, LEGACY_MAGIC_ZHEADER)
_FIXED = struct.Struct('<4sIIQ')  # magic, stored / JSON header bytes, body
_CRC = struct.Struct('<I')
_LEGACY_FIXED = struct.Struct('<4sI')
# Plausibility bounds for what a header may declare (load refuses more).
MAX_HEADER_BYTES = 64 << 20   # JSON header: ~100 B per array in practice
_DEFLATE_MAX_RATIO = 1032     # zlib cannot expand data more than this
class ArtifactError(DataFormatError):
  """A .jxcz file is not an artifact, is truncated or corrupt, or its header
  declares arrays the file cannot hold."""


class ArtifactWarning(UserWarning):
  """An artifact was loaded without an integrity check (format 1)."""


def write_file(path: str, raw_header: bytes, blobs: list[bytes],
               zlib_header: bool) -> None:
  """Writes header + blobs framed and checksummed, atomically (temp file,
  then os.replace)."""
  head, magic = (zlib.compress(raw_header, 9), MAGIC_ZHEADER) if zlib_header \
      else (raw_header, MAGIC)
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    n_body = sum(len(b) for b in blobs)
    crc = _write(f, _FIXED.pack(magic, len(head), len(raw_header), n_body), 0)
    crc = _write(f, head, crc)
    for b in blobs:
      crc = _write(f, b, crc)
    f.write(_CRC.pack(crc))
  os.replace(tmp, path)


def read(path: str, data: bytes) -> tuple[dict, memoryview]:
  """(header dict, body) of a file's bytes, framing and CRC verified."""
  head, n_raw, body = _read_container(path, data)
  return _parse_header(path, head, n_raw), body


def _write(f, data: bytes, crc: int) -> int:
  f.write(data)
  return zlib.crc32(data, crc)


def fail(path: str, msg: str):
  raise ArtifactError(f'{path}: {msg}')


def _read_container(path: str, data: bytes) -> tuple[bytes, int, memoryview]:
  """(stored header, n_raw, body) after checking the framing: magic,
  declared lengths == file size, CRC-32. n_raw: a zlib header's declared
  JSON length; -1: plain header; -2: format-1 zlib header (length unknown)."""
  magic = data[:4]
  if magic in (LEGACY_MAGIC, LEGACY_MAGIC_ZHEADER):
    return _read_legacy(path, data)
  if magic not in (MAGIC, MAGIC_ZHEADER):
    fail(path, f'not a jaxcnn .jxcz artifact (magic {magic!r}, expected '
          f'{MAGIC!r})')
  end = _FIXED.size + _CRC.size
  if len(data) < end:
    fail(path, f'truncated: {len(data)} bytes, shorter than the '
          f'{end}-byte framing')
  _, n_head, n_raw, n_body = _FIXED.unpack_from(data)
  want = end + n_head + n_body
  if len(data) != want:
    what = 'truncated' if len(data) < want else (
        f'{len(data) - want} bytes of trailing data')
    fail(path, f'{what}: the header declares {want} bytes ({n_head} header '
          f'+ {n_body} body), the file has {len(data)}')
  (stored,) = _CRC.unpack_from(data, len(data) - _CRC.size)
  crc = zlib.crc32(memoryview(data)[:-_CRC.size])
  if crc != stored:
    fail(path, f'checksum mismatch (stored CRC-32 {stored:08x}, computed '
          f'{crc:08x}): the file is corrupt')
  head = data[_FIXED.size:_FIXED.size + n_head]
  if magic == MAGIC and n_raw != n_head:
    fail(path, f'header length {n_raw} != stored length {n_head}')
  body = memoryview(data)[_FIXED.size + n_head:len(data) - _CRC.size]
  return head, n_raw if magic == MAGIC_ZHEADER else -1, body


def _read_legacy(path: str, data: bytes) -> tuple[bytes, int, memoryview]:
  """Format 1: nothing to verify the bytes against; structure only."""
  if len(data) < _LEGACY_FIXED.size:
    fail(path, f'truncated: {len(data)} bytes')
  magic, n = _LEGACY_FIXED.unpack_from(data)
  if n > len(data) - _LEGACY_FIXED.size:
    fail(path, f'truncated: header length {n} exceeds the '
          f'{len(data) - _LEGACY_FIXED.size} bytes after the magic')
  warnings.warn(f'{path}: format-1 artifact (magic {magic!r}) has no '
                'checksum; its bytes are not verified (re-run the '
                'compression to write format 2)', ArtifactWarning,
                stacklevel=6)  # the caller of storage.load()
  head = data[_LEGACY_FIXED.size:_LEGACY_FIXED.size + n]
  # -2: compressed, JSON length unknown (bounded by MAX_HEADER_BYTES).
  return (head, -2 if magic == LEGACY_MAGIC_ZHEADER else -1,
          memoryview(data)[_LEGACY_FIXED.size + n:])


def _inflate(path: str, head: bytes, n_raw: int) -> bytes:
  """zlib header, never expanded past its declared (or maximal) size."""
  bound = min(MAX_HEADER_BYTES, _DEFLATE_MAX_RATIO * len(head) + 64)
  if n_raw > bound:
    fail(path, f'implausible header: {n_raw} JSON bytes declared for '
          f'{len(head)} compressed bytes (at most {bound})')
  cap = bound if n_raw < 0 else n_raw
  d = zlib.decompressobj()
  try:
    raw = d.decompress(head, cap + 1)  # +1: see an overlong stream
  except zlib.error as e:
    fail(path, f'corrupt compressed header: {e}')
  if len(raw) > cap or not d.eof or d.unused_data or (
      n_raw >= 0 and len(raw) != n_raw):
    fail(path, f'compressed header does not inflate to its declared '
          f'{cap} bytes')
  return raw


def _parse_header(path: str, head: bytes, n_raw: int) -> dict:
  if n_raw != -1:
    head = _inflate(path, head, n_raw)
  try:
    header = json.loads(head)
  except (ValueError, RecursionError) as e:  # UnicodeDecodeError included
    fail(path, f'header is not valid JSON: {str(e)[:200]}')
  if not (isinstance(header, dict) and isinstance(header.get('meta'), dict)
          and isinstance(header.get('leaves'), dict)
          and isinstance(header.get('arrays'), list)):
    fail(path, "header lacks its 'meta', 'leaves' and 'arrays' entries")
  return header
