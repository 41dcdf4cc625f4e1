"""Canonical Huffman coding (Deep Compression stage 3, Han et al. 2016).

`encode(symbols, alphabet)` -> {'lengths', 'bits'}: the code length of every
symbol (uint8, trailing zeros trimmed) and the bitstream, MSB first, packed
into bytes. Canonical codes are rebuilt from the lengths alone (sorted by
(length, symbol), consecutive integers), so no tree is stored. Lengths are
capped at MAX_LEN bits by halving the counts until the tree fits, which
keeps the decoder's lookup table at 2^MAX_LEN entries. A stream of a single
repeated symbol costs no bits: its count and the one non-zero length say it.

`encode_weights(w)` is the storage.py leaf encoding 'huffman': a pruned
and shared kernel as an fp32 codebook of its distinct nonzero values, the
relative-index gaps (Deep Compression's sparse format: gap code 0 is a
filler that advances 2^b - 1 positions without a weight) and each nonzero's
codebook index, the two streams Huffman-coded separately. Everything goes in
one uint8 blob with a 15-byte header, so the container's JSON header lists
one array per leaf. Decoding gives back every float bit for bit.
"""
from __future__ import annotations

import heapq
import struct

import numpy as np

MAX_LEN = 15       # lengths are stored as 4-bit nibbles
MAX_VALUES = 4096   # more distinct values than this: not a shared kernel


def _tree_lengths(freq: np.ndarray) -> np.ndarray:
  """Huffman code lengths for positive counts (len(freq) >= 2)."""
  heap = [(int(f), i, (i,)) for i, f in enumerate(freq)]
  heapq.heapify(heap)
  depth = np.zeros(len(freq), np.int64)
  tie = len(freq)
  while len(heap) > 1:
    fa, _, a = heapq.heappop(heap)
    fb, _, b = heapq.heappop(heap)
    members = a + b
    depth[list(members)] += 1
    heapq.heappush(heap, (fa + fb, tie, members))
    tie += 1
  return depth


def code_lengths(freq, max_len: int = MAX_LEN) -> np.ndarray:
  """uint8 code length per symbol; 0 for unused symbols."""
  freq = np.asarray(freq, np.int64)
  lengths = np.zeros(len(freq), np.uint8)
  used = np.flatnonzero(freq)
  if len(used) == 1:
    lengths[used] = 1
  elif len(used) > 1:
    f = freq[used]
    while True:
      d = _tree_lengths(f)
      if d.max() <= max_len:
        break
      f = np.maximum(f // 2, 1)   # flatter counts, shallower tree
    lengths[used] = d
  return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
  """Integer code per symbol from its length (canonical Huffman)."""
  lengths = np.asarray(lengths, np.int64)
  codes = np.zeros(len(lengths), np.int64)
  code, prev = 0, 0
  for s in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
    code <<= int(lengths[s]) - prev
    prev = int(lengths[s])
    codes[s] = code
    code += 1
  return codes


def encode(symbols: np.ndarray, alphabet: int) -> dict:
  """{'lengths': uint8 [<= alphabet], 'bits': uint8 bytes} of the stream."""
  s = np.asarray(symbols, np.int64).reshape(-1)
  lengths = code_lengths(np.bincount(s, minlength=alphabet))
  last = np.flatnonzero(lengths)
  lengths = lengths[:last[-1] + 1] if len(last) else lengths[:0]
  if len(last) <= 1:  # one repeated symbol (or none): nothing to send
    return {'lengths': lengths, 'bits': np.zeros(0, np.uint8)}
  codes = canonical_codes(lengths)
  ln = lengths.astype(np.int64)[s]
  total = int(ln.sum())
  owner = np.repeat(np.arange(len(s)), ln)
  offset = np.arange(total) - np.repeat(np.cumsum(ln) - ln, ln)
  bits = (codes[s][owner] >> (ln[owner] - 1 - offset)) & 1
  return {'lengths': lengths, 'bits': np.packbits(bits.astype(np.uint8))}


def decode(arrays: dict, n: int) -> np.ndarray:
  """The n symbols of a stream written by `encode` (int64)."""
  lengths = np.asarray(arrays['lengths'], np.int64)
  used = np.flatnonzero(lengths)
  if len(used) <= 1:
    return np.full(n, used[0] if len(used) else 0, np.int64)
  top = int(lengths.max())
  codes = canonical_codes(lengths)
  # Lookup table on the next `top` bits: every code fills the entries that
  # start with it.
  sym_of = np.zeros(1 << top, np.int64)
  len_of = np.zeros(1 << top, np.int64)
  for s in used:
    lo = int(codes[s]) << (top - int(lengths[s]))
    hi = (int(codes[s]) + 1) << (top - int(lengths[s]))
    sym_of[lo:hi], len_of[lo:hi] = s, lengths[s]
  bits = np.concatenate([np.unpackbits(arrays['bits']).astype(np.int64),
                         np.zeros(top, np.int64)])
  window = np.zeros(len(bits) - top, np.int64)
  for j in range(top):
    window = (window << 1) | bits[j:j + len(window)]
  sym_at = sym_of[window].tolist()
  len_at = len_of[window].tolist()
  out, pos = [0] * n, 0
  for i in range(n):
    out[i] = sym_at[pos]
    pos += len_at[pos]
  return np.asarray(out, np.int64)


def _nibbles(lengths: np.ndarray, n: int) -> np.ndarray:
  """n code lengths (<= 15) packed two per byte."""
  v = np.zeros(n + n % 2, np.uint8)
  v[:len(lengths)] = lengths
  return (v[0::2] | (v[1::2] << 4)).astype(np.uint8)


def _unnibble(b: np.ndarray, n: int) -> np.ndarray:
  return np.stack([b & 15, b >> 4], axis=1).reshape(-1)[:n]


def _encode_gaps(pos: np.ndarray, bits: int) -> np.ndarray:
  """Relative index: gap to the previous nonzero, fillers (code 0) every
  2^bits - 1 positions of a longer gap."""
  top = (1 << bits) - 1
  gaps = np.diff(np.concatenate([[-1], pos]))
  fill = (gaps - 1) // top          # fillers before each nonzero
  codes = np.zeros(int(np.sum(fill)) + len(pos), np.int64)
  codes[np.cumsum(fill + 1) - 1] = gaps - fill * top
  return codes


_HEAD = struct.Struct('<IIHBI')  # codes, nonzeros, codebook size, gap bits, gap stream bytes


def encode_weights(w: np.ndarray, bits: int = 0) -> dict | None:
  """{'blob': uint8} of a pruned + shared leaf: header, fp32 codebook,
  4-bit code lengths of both streams, gap bitstream, index bitstream. The
  gap width (3..8 bits; `bits` > 0 forces one) is the one giving the
  smallest blob. None if w is not such a leaf (no nonzeros, not float32,
  or more than MAX_VALUES distinct values)."""
  flat = np.asarray(w).reshape(-1)
  if flat.dtype != np.float32:
    return None
  pos = np.flatnonzero(flat)
  if not len(pos):
    return None
  values, idx = np.unique(flat[pos], return_inverse=True)
  if len(values) > MAX_VALUES:
    return None
  ind = encode(idx, len(values))
  tail = (_nibbles(ind['lengths'], len(values)).tobytes() +
          values.astype('<f4').tobytes())
  best = None
  for b in ([bits] if bits else range(3, 9)):
    codes = _encode_gaps(pos, b)
    g = encode(codes, 1 << b)
    blob = (_HEAD.pack(len(codes), len(pos), len(values), b, len(g['bits']))
            + _nibbles(g['lengths'], 1 << b).tobytes() + tail
            + g['bits'].tobytes() + ind['bits'].tobytes())
    if best is None or len(blob) < len(best):
      best = blob
  return {'blob': np.frombuffer(best, np.uint8).copy()}


def decode_weights(arrays: dict, shape, bits: int = 0) -> np.ndarray:
  del bits  # the blob records its gap width
  blob = np.asarray(arrays['blob'], np.uint8)
  n, nnz, k, b, gap_bytes = _HEAD.unpack_from(blob.tobytes(), 0)
  off = _HEAD.size
  take = lambda m: blob[off:off + m]
  gap_len = _unnibble(take((1 << b) // 2 + (1 << b) % 2), 1 << b)
  off += ((1 << b) + 1) // 2
  idx_len = _unnibble(take((k + 1) // 2), k)
  off += (k + 1) // 2
  codebook = np.frombuffer(take(4 * k).tobytes(), '<f4')
  off += 4 * k
  gap_bits = take(gap_bytes)
  off += gap_bytes
  codes = decode({'lengths': gap_len, 'bits': gap_bits}, n)
  idx = decode({'lengths': idx_len, 'bits': blob[off:]}, nnz)
  step = np.where(codes == 0, (1 << b) - 1, codes)
  pos = (np.cumsum(step) - 1)[codes > 0]
  out = np.zeros(int(np.prod(shape)), np.float32)
  out[pos] = codebook[idx]
  return out.reshape(shape)


def stream_bits(arrays: dict) -> dict:
  """Bits per nonzero of the index (codebook) and position (gap) streams
  of an 'huffman' leaf, for the report."""
  blob = np.asarray(arrays['blob'], np.uint8)
  n, nnz, k, b, gap_bytes = _HEAD.unpack_from(blob.tobytes(), 0)
  fixed = _HEAD.size + ((1 << b) + 1) // 2 + (k + 1) // 2 + 4 * k
  idx_bytes = len(blob) - fixed - gap_bytes
  return {'index_bits_per_nonzero': 8.0 * idx_bytes / nnz,
          'position_bits_per_nonzero': 8.0 * gap_bytes / nnz,
          'gap_width': b, 'codebook_size': k, 'fillers': n - nnz}
