"""Builds and loads the oneDNN convolution handlers (dnnl_conv.cc) once.

oneDNN comes from the `onednn` and `onednn-devel` wheels (requirements.txt),
which install `libdnnl.so` under `<venv>/lib` and its headers under
`<venv>/include`; `JAXCNN_DNNL_ROOT` may point at another prefix with the
same layout. That build's CPU runtime is SYCL, whose CPU device is the
OpenCL runtime from the `intel-opencl-rt` wheel; `OCL_ICD_FILENAMES` is set
to it (unless already set) before oneDNN is first loaded.

The shared library is compiled with the system C++ compiler (`$CXX`, else
`g++`, ~4 s) by native_build into `~/.cache/jaxcnn/onednn/<hash>/`
(`JAXCNN_CACHE_DIR` replaces `~/.cache/jaxcnn`), keyed by the source, the
flags, the oneDNN library and jaxlib's version, and reused afterwards. Then the three XLA FFI targets are
registered for the CPU platform (jaxcnn/ops/conv.py then checks a small
convolution against XLA's). Any failure (no wheel, no compiler, a runtime that does not start)
leaves `status()` false with the reason, and callers use XLA's convolution.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import sys

import jax

from jaxcnn.ops import native_build

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'dnnl_conv.cc')
TARGETS = {'forward': 'JaxcnnDnnlConvForward',
           'backward_data': 'JaxcnnDnnlConvBackwardData',
           'backward_weights': 'JaxcnnDnnlConvBackwardWeights'}
TARGET_PREFIX = 'jaxcnn_dnnl_conv_'


@dataclasses.dataclass(frozen=True)
class Status:
  ok: bool
  reason: str           # why not, or the library used
  version: str = ''
  native_bf16: bool = False  # oneDNN's ISA here multiplies bf16 natively


def _root() -> str:
  return os.environ.get('JAXCNN_DNNL_ROOT') or sys.prefix


def _find(root: str) -> tuple[str, str]:
  inc, lib = os.path.join(root, 'include'), os.path.join(root, 'lib')
  if not os.path.exists(os.path.join(inc, 'dnnl.hpp')):
    raise FileNotFoundError(f'no oneDNN headers (dnnl.hpp) in {inc}: '
                            'pip install onednn-devel')
  if not os.path.exists(os.path.join(lib, 'libdnnl.so')):
    raise FileNotFoundError(f'no libdnnl.so in {lib}: pip install onednn')
  return inc, lib


def _args(inc: str, lib: str) -> list[str]:
  # DT_RPATH (not RUNPATH) so that libdnnl's own dependencies (TBB, SYCL,
  # the Intel runtime, all beside it) resolve without LD_LIBRARY_PATH.
  return ['-O2', '-I', inc, '-L', lib, f'-Wl,-rpath-link,{lib}',
          '-Wl,--disable-new-dtags', f'-Wl,-rpath,{os.path.realpath(lib)}',
          '-ldnnl']


def _key(inc: str, lib: str) -> tuple[str, str]:
  """The cache key beyond source and flags: which oneDNN it links."""
  return os.path.realpath(os.path.join(lib, 'libdnnl.so')), inc


def _compile(inc: str, lib: str, out: str) -> None:
  native_build.compile_shared(SOURCE, out, _args(inc, lib))


def _register(path: str) -> tuple[str, bool]:
  """Registers the FFI targets; (oneDNN version, native bf16)."""
  lib = ctypes.CDLL(path)
  for short, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(TARGET_PREFIX + short,
                                jax.ffi.pycapsule(getattr(lib, symbol)),
                                platform='cpu')
  v = lib.jaxcnn_dnnl_version()
  return (f'{v // 10000}.{v // 100 % 100}.{v % 100}',
          bool(lib.jaxcnn_dnnl_native_bf16()))


def build_linked(name: str, source: str) -> str:
  """Builds `source` against this oneDNN (cached by native_build) and
  points the SYCL runtime at the OpenCL CPU device; the library's path."""
  inc, lib = _find(_root())
  icd = os.path.join(lib, 'libintelocl.so')
  if os.path.exists(icd):
    os.environ.setdefault('OCL_ICD_FILENAMES', icd)
  return native_build.build(name, source, _args(inc, lib), _key(inc, lib))


@functools.lru_cache(maxsize=1)
def status() -> Status:
  """Builds (first time on this machine), loads and registers; cached."""
  try:
    path = build_linked('onednn', SOURCE)
    version, native_bf16 = _register(path)
  except Exception as e:  # pylint: disable=broad-except
    return Status(False, f'{type(e).__name__}: {e}')
  return Status(True, path, version, native_bf16)
