"""Collective ordering of compiled SPMD programs.

XLA:CPU runs each host device's share of a program on a shared thread pool,
and its thunk executor starts independent instructions concurrently. Two
collectives that no data dependency orders may be entered in different
orders on different devices, each rendezvous then waiting for the other.
A program is safe from that when its collectives form one chain: each
depends on the one before. (The hang issue 16 reported came from elsewhere,
too many programs in flight: jaxcnn/parallel.py Throttle.)
"""
from __future__ import annotations

import re

COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all',
               'collective-permute', 'collective-broadcast')
_DEF = re.compile(r'^\s*(?:ROOT\s+)?(%[\w.\-]+)\s*=\s*(.*)$')
_REF = re.compile(r'%[\w.\-]+')


def _computations(hlo: str) -> dict[str, list[str]]:
  comps, name = {}, None
  for line in hlo.splitlines():
    head = re.match(r'^(ENTRY\s+)?(%[\w.\-]+)\s.*\{\s*$', line)
    if head:
      name = 'ENTRY' if head.group(1) else head.group(2)
      comps[name] = []
    elif line.strip() == '}':
      name = None
    elif name is not None:
      comps[name].append(line)
  return comps


def _opcode(rhs: str) -> str:
  # "f32[64,10]{1,0} all-gather(%x), ..." or a tuple shape "(f32[], ...) op(".
  m = re.search(r'\s([a-z][\w\-]*)\(', ' ' + rhs.split(', metadata=')[0])
  return m.group(1) if m else ''


def unordered_collectives(hlo: str) -> list[tuple[str, str]]:
  """Pairs of collectives in any computation that no dependency orders.

  HLO text defines operands before their users, so one pass in order gives
  each instruction the set of collectives it (transitively) depends on.
  """
  bad = []
  for lines in _computations(hlo).values():
    before: dict[str, frozenset] = {}  # instruction -> collectives upstream
    colls = []
    for line in lines:
      m = _DEF.match(line)
      if not m:
        continue
      name, rhs = m.groups()
      up = set()
      for ref in _REF.findall(rhs.split(', metadata=')[0]):
        up |= before.get(ref, frozenset())
      if _opcode(rhs).replace('-start', '') in COLLECTIVES:
        bad += [(c, name) for c in colls if c not in up]
        colls.append(name)
        up.add(name)
      before[name] = frozenset(up)
  return bad


def collectives(hlo: str) -> list[str]:
  """Opcodes of every collective instruction, in text order."""
  out = []
  for lines in _computations(hlo).values():
    for line in lines:
      m = _DEF.match(line)
      if m and _opcode(m.group(2)).replace('-start', '') in COLLECTIVES:
        out.append(_opcode(m.group(2)))
  return out
