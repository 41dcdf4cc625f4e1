"""Keep freed host memory in the process: no page faults per CPU step.

XLA:CPU (jaxlib 0.10.2) allocates each execution's temporaries as one
buffer (94 MB for the tutorial net's train step at batch 128) and frees it
when the step ends. glibc serves a request that size with a fresh `mmap`
(from a non-main arena, whatever the mmap threshold) and returns it with
`munmap`, so every step first-touches 23,000 new pages: measured 22,979
minor page faults per step (`resource.getrusage`), which the kernel zeroes
one by one. With freed memory kept in one heap the next step reuses it:
0 faults per step, and the step with oneDNN convolutions went from 1,531 to
2,084 img/s on the 2-core dev CPU (docs/performance.md).

`keep_freed_memory()` asks glibc, through `mallopt`, for one arena, no
`mmap` for large blocks and no trimming of the heap. It must run before the
process's threads first allocate (arenas are picked per thread on first use),
so the CLI entry points call it first thing. The cost: the heap does not
shrink, so the process holds its peak footprint until it exits. Opt out with
`JAXCNN_HOST_MALLOC=default`. Without glibc (other C libraries, macOS) it
does nothing and says so.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_KEEP = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0),
         (_M_TRIM_THRESHOLD, 2**31 - 1))  # mallopt takes an int


def keep_freed_memory() -> str:
  """Applies the settings above once per process; returns what it did."""
  if os.environ.get('JAXCNN_HOST_MALLOC', 'keep') == 'default':
    return 'default (JAXCNN_HOST_MALLOC=default)'
  name = ctypes.util.find_library('c')
  try:
    libc = ctypes.CDLL(name or 'libc.so.6')
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return 'default (no glibc mallopt)'
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  if not all(mallopt(param, value) == 1 for param, value in _KEEP):
    return 'default (mallopt refused)'
  return 'keep (one arena, no mmap, no trim)'
