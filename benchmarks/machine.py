"""One line naming the machine a benchmark ran on, for its report.

The dev VMs this project is measured on differ between sessions (the same
"AMD EPYC, 2 cores" has come with AVX-512 + AVX512_BF16 and with AVX2
only; fp32 matmul peaks 276-295 vs ~100 GFLOP/s), and oneDNN, XLA and TF
pick different kernels on each, so a figure without the vector ISA cannot
be compared with another."""
from __future__ import annotations

import os
import platform

# The x86 flags that change which kernels the libraries choose.
ISA_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni',
             'avx_vnni', 'amx_tile', 'amx_bf16')


def cpu_model(cpuinfo: str) -> str:
  for line in cpuinfo.splitlines():
    if line.startswith('model name'):
      return line.split(':', 1)[1].strip()
  return platform.processor() or platform.machine()


def isa(cpuinfo: str) -> list[str]:
  """The ISA_FLAGS of the first CPU listed in /proc/cpuinfo's text."""
  for line in cpuinfo.splitlines():
    if line.startswith('flags'):
      have = set(line.split(':', 1)[1].split())
      return [f for f in ISA_FLAGS if f in have]
  return []


def read_cpuinfo() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      return f.read()
  except OSError:
    return ''


def describe(cpuinfo: str | None = None) -> str:
  """e.g. 'x86_64, AMD EPYC, 2 CPU cores, ISA: avx2 fma (no AVX-512)'."""
  text = read_cpuinfo() if cpuinfo is None else cpuinfo
  flags = isa(text)
  out = f'{platform.machine()}, {cpu_model(text)}, {os.cpu_count()} CPU cores'
  if flags:
    out += ', ISA: ' + ' '.join(flags)
    if 'avx512f' not in flags:
      out += ' (no AVX-512)'
  return out
