"""A CPU-only fusion boundary: `materialize(x)` is x, written to memory once.

In a residual net's train step XLA:CPU feeds every conv's filter gradient a
transposed copy of the conv input (batch moved to the minor dimension). The
input is an elementwise chain (BN -> add -> relu, block after block), and
XLA fuses the whole chain into that transposing copy, re-reading up to 20
arrays at a stride of one image per element. In ResNet-20 those fusions
were ~48% of the CPU step's op time (benchmarks/profile_step.py; docs/performance.md).

`lax.optimization_barrier` does not stop this: XLA:CPU removes barriers
before fusion. A conditional does: values cross it in memory. So on CPU the
value passes through a `lax.cond` whose predicate XLA can't fold; the taken
branch returns it unchanged, and the transposes then read one array.
Elsewhere (GPU/TPU, where fusion works differently) it is the identity.
The result is bitwise x either way (tests/test_fusion.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _through_cond(x: jax.Array) -> jax.Array:
  first = x.reshape(-1)[0]
  # The predicate is false only when x already holds a NaN; that branch then
  # makes all of x NaN. The branches must differ: XLA merges identical ones
  # and drops the conditional.
  return lax.cond(first == first, lambda v, f: v, lambda v, f: v + f, x, first)


def materialize(x: jax.Array) -> jax.Array:
  if x.size == 0:
    return x
  return lax.platform_dependent(x, cpu=_through_cond, default=jnp.asarray)
