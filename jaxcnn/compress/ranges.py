"""Valid ranges of the compression settings (config.compress.*).

The locked config catches unknown keys and type changes; these catch values
of the right type that no method can use (prune.sparsity=1.5 would zero
every weight, pq.bits=0 would build empty codebooks). `check(config)`
raises ConfigError naming the field before any data loading or compilation;
the compress CLI calls it, and so should experiment._validate_compress.
jaxcnn/config_checks.py covers the other sections (and NaN anywhere).
"""
from __future__ import annotations

import math

from jaxcnn.compress import kmeans, prune
from jaxcnn.errors import ConfigError

# What storage.encode_leaf accepts for a sparse collection.
ENCODINGS = ('auto', 'dense', 'relative', 'csr', 'huffman')
GRADS = ('sum', 'mean')


def _one_of(options):
  return (lambda v: v in options), f'one of {options}'


def _int_range(lo, hi=None):
  text = f'an int in [{lo}, {hi}]' if hi is not None else f'an int >= {lo}'
  return (lambda v: type(v) is not bool and v >= lo and (
      hi is None or v <= hi)), text


def _real(lo, hi=None, lo_open=False, hi_open=False):
  """A finite number in the interval (NaN fails every comparison)."""
  text = (f'in {"(" if lo_open else "["}{lo}, {hi}{")" if hi_open else "]"}'
          if hi is not None else f'{">" if lo_open else ">="} {lo}')

  def ok(v):
    return (math.isfinite(v) and (v > lo if lo_open else v >= lo) and (
        hi is None or (v < hi if hi_open else v <= hi)))
  return ok, text


FRACTION = _real(0, 1, hi_open=True)   # of weights or filters removed

# 'section.field' under config.compress -> (test, what it must be).
RULES = {
    'encoding': _one_of(ENCODINGS),
    'index_bits': _one_of((4, 8)),     # relative: two gaps per byte, or one
    'prune.scope': _one_of(('layer', 'global')),
    'prune.sparsity': FRACTION,
    'prune.schedule': _one_of(prune.SCHEDULES),
    'prune.initial_sparsity': FRACTION,
    'prune.begin_step': _int_range(0),
    'prune.end_step': _int_range(0),
    'prune.frequency': _int_range(1),
    'prune.rounds': _int_range(1),
    'prune.l1': _real(0),
    'prune.group_lasso': _real(0),
    'filter_prune.ratio': FRACTION,
    'filter_prune.norm': _one_of(('l1', 'l2')),
    'svd.rank': _int_range(0),         # 0: use param_ratio or energy
    'svd.param_ratio': _real(0, 1),
    'svd.energy': _real(0, 1),
    'binary.act_bits': _int_range(1, 4),
    'kmeans.bits_conv': _int_range(1, 12),  # huffman.MAX_VALUES = 2^12
    'kmeans.bits_fc': _int_range(1, 12),
    'kmeans.init': _one_of(kmeans.INITS),
    'kmeans.iterations': _int_range(0),
    'kmeans.grad': _one_of(GRADS),
    'pq.sub_dim': _int_range(1),
    'pq.bits': _int_range(1, 16),
    'pq.iterations': _int_range(0),
    'pq.grad': _one_of(GRADS),
    'pq.calib_batches': _int_range(1),
    'pq.passes': _int_range(1),
    'int8.weight_bits': _int_range(2, 8),
    'int8.act_bits': _int_range(2, 8),
    'int8.calib_batches': _int_range(1),
    'int8.act_percentile': _real(0, 100, lo_open=True),
    'deep_compression.prune_steps': _int_range(1),
    'deep_compression.quantize_steps': _int_range(1),
    'deep_compression.quantize_lr_scale': _real(0, lo_open=True),
}


def _get(node, dotted: str):
  for key in dotted.split('.'):
    if key not in node:
      return None
    node = node[key]
  return node


def check(config) -> None:
  """ConfigError for the first compress.* value out of its range."""
  def bad(msg):
    raise ConfigError(f'invalid config: {msg}')
  c = config.compress
  for field, (ok, text) in RULES.items():
    value = _get(c, field)
    try:
      good = value is None or ok(value)
    except TypeError:  # e.g. a str where a number belongs
      good = False
    if not good:
      bad(f'compress.{field} must be {text}, got {value!r}')
  p = c.prune
  if p.initial_sparsity > p.sparsity:
    bad(f'compress.prune.initial_sparsity={p.initial_sparsity} exceeds '
        f'compress.prune.sparsity={p.sparsity}')
  if c.method == 'svd' and not (c.svd.rank > 0 or c.svd.param_ratio > 0
                                or c.svd.energy > 0):
    bad('compress.svd: set rank, param_ratio or energy > 0')
  if c.binary.stochastic and c.method in ('bwn', 'xnor'):
    bad(f'compress.binary.stochastic is for method binary, not {c.method}')
