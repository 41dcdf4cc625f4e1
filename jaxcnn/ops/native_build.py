"""Compiles jaxcnn's C++ XLA FFI handlers into shared libraries, once.

Each library is built with the system C++ compiler (`$CXX`, else `g++`) into
`~/.cache/jaxcnn/<name>/<hash>/libjaxcnn_<name>.so` (`JAXCNN_CACHE_DIR` replaces
`~/.cache/jaxcnn`). The hash covers the source, the headers it includes
from its own folder, the compiler flags, jaxlib's version, the caller's
extra key parts and, for code built with `-march=native`, this CPU's
feature flags, so a cache shared between machines never hands one CPU
another's instructions. Writes are atomic: parallel builders each write
their own temporary file.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from typing import Sequence

import jax
import jaxlib

from jaxcnn import paths


def compiler() -> str:
  """$CXX, else g++ or c++ on PATH; FileNotFoundError naming what is
  missing."""
  cxx = os.environ.get('CXX')
  if cxx:
    if not shutil.which(cxx):
      raise FileNotFoundError(f'no C++ compiler: $CXX={cxx} not found')
    return cxx
  cxx = shutil.which('g++') or shutil.which('c++')
  if not cxx:
    raise FileNotFoundError('no C++ compiler (g++ or $CXX)')
  return cxx


def cpu_flags() -> str:
  """This CPU's feature flags (/proc/cpuinfo), or the machine name."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith(('flags', 'Features')):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.machine()


def compile_shared(source: str, out: str, args: Sequence[str]) -> None:
  """`$CXX -shared source args -o out`, atomically; raises with the
  compiler's message on failure (nothing is left at `out`)."""
  cxx = compiler()
  os.makedirs(os.path.dirname(out), exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix='.so', dir=os.path.dirname(out))
  os.close(fd)
  cmd = [cxx, '-std=c++17', '-shared', '-fPIC', '-w', source,
         '-I', jax.ffi.include_dir(), *args, '-o', tmp]
  done = subprocess.run(cmd, capture_output=True, text=True)
  if done.returncode:
    os.unlink(tmp)
    raise RuntimeError(f'{cxx} failed: {done.stderr.strip()[-800:]}')
  os.replace(tmp, out)


def local_headers(source: str, text: bytes) -> list[str]:
  """The `#include "x.h"` files next to `source` (part of the cache key)."""
  here = os.path.dirname(source)
  names = re.findall(rb'^\s*#include\s+"([^"/]+)"', text, re.M)
  found = [os.path.join(here, n.decode()) for n in names]
  return [f for f in found if os.path.exists(f)]


def library_path(name: str, source: str, args: Sequence[str],
                 key_parts: Sequence[str] = ()) -> str:
  """Where the library built from `source` with `args` is cached."""
  with open(source, 'rb') as f:
    text = f.read()
  h = hashlib.sha256(text)
  for header in local_headers(source, text):
    with open(header, 'rb') as f:
      h.update(f.read())
  parts = [*args, *key_parts, jaxlib.__version__]
  if '-march=native' in args:
    parts.append(cpu_flags())
  for part in parts:
    h.update(part.encode())
  return os.path.join(paths.cache_root(), name, h.hexdigest()[:16],
                      f'libjaxcnn_{name}.so')


def build(name: str, source: str, args: Sequence[str],
          key_parts: Sequence[str] = ()) -> str:
  """The cached library's path, compiling it first if it is not there."""
  path = library_path(name, source, args, key_parts)
  if not os.path.exists(path):
    compile_shared(source, path, args)
  return path


def load_checked(name: str, source: str, args: Sequence[str],
                 targets: dict[str, str], check) -> str:
  """Builds, registers each FFI target (name -> exported symbol) for CPU
  and runs `check()` eagerly (first use may come while a model is being
  traced); the library's path. Raises on any failure."""
  path = build(name, source, args)
  lib = ctypes.CDLL(path)
  for target, symbol in targets.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                platform='cpu')
  with jax.ensure_compile_time_eval():
    check()
  return path
