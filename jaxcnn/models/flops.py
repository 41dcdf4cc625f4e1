"""Parameter and multiply-add (MAC) counts, and a per-layer summary for logs.

MACs are counted analytically per layer by intercepting every module call
while `init` is traced under `jax.eval_shape` (nothing is allocated or
compiled, so even 227x227 AlexNet is instant):
  * Conv / ConvLocal: out_elements * kh * kw * in_channels / groups
    (unshared weights cost the same multiply-adds as shared ones);
  * Dense: out_elements * in_features;
  * any other module with a rank-4 HWIO 'kernel' (e.g. LeNet's MaskedConv) is
    costed like a dense conv from that kernel.
Pooling, normalisation, activations and bias adds are not multiply-adds of a
weight layer and are left out, the usual convention for "multiply-adds per
image". Walking the jaxpr instead would miscount: LRN's banded-matmul window
sum and ConvLocal's patch extraction are dot/conv primitives too.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def param_count(tree: Any) -> int:
  """Number of scalars in a pytree (e.g. variables['params'])."""
  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(tree)))


@dataclasses.dataclass(frozen=True)
class LayerStats:
  path: str            # '/'-joined module names; '' for the root
  kind: str            # module class name
  output_shape: tuple  # per image (batch axis dropped) where it has one
  params: int          # this module's own 'params', not its children's
  macs: int            # per image


def _own_params(module: nn.Module) -> tuple[int, Any]:
  """Size of this module's direct 'params' leaves, and its 'kernel' if any."""
  own = module.variables.get('params', {})
  leaves = {k: v for k, v in own.items() if not isinstance(v, dict)}
  return param_count(leaves), leaves.get('kernel')


def _macs(module: nn.Module, x: Any, y: Any, kernel: Any) -> int:
  if not (hasattr(x, 'shape') and hasattr(y, 'shape')):
    return 0
  out = int(np.prod(y.shape))
  if isinstance(module, (nn.Conv, nn.ConvLocal)):
    k = int(np.prod(module.kernel_size))
    return out * k * x.shape[-1] // module.feature_group_count
  if isinstance(module, nn.Dense):
    return out * x.shape[-1]
  if kernel is not None and np.ndim(kernel) == 4:
    return out * int(np.prod(np.shape(kernel)[:-1]))
  return 0


def layer_stats(model: nn.Module, input_shape: Sequence[int],
                dtype=jnp.float32) -> list[LayerStats]:
  """Every module call of `model` in inference mode, in call order.

  `input_shape` is one image, (H, W, C); a leading batch axis is allowed and
  the counts are still reported per image.
  """
  shape = tuple(input_shape)
  if len(shape) == 3:
    shape = (1,) + shape
  batch = shape[0]
  records: list[LayerStats] = []

  def interceptor(next_fun, args, kwargs, context):
    y = next_fun(*args, **kwargs)
    if context.method_name != '__call__':
      return y
    module = context.module
    n_params, kernel = _own_params(module)
    x = args[0] if args else None
    out_shape = tuple(y.shape[1:]) if hasattr(y, 'shape') else ()
    records.append(LayerStats(
        path='/'.join(str(p) for p in module.scope.path),
        kind=type(module).__name__, output_shape=out_shape, params=n_params,
        macs=_macs(module, x, y, kernel) // batch))
    return y

  def init():
    return model.init(jax.random.key(0), jnp.zeros(shape, dtype), train=False)

  with nn.intercept_methods(interceptor):
    jax.eval_shape(init)
  return records


def count_macs(model: nn.Module, input_shape: Sequence[int],
               dtype=jnp.float32) -> int:
  """Multiply-adds of one forward pass over one image."""
  return sum(r.macs for r in layer_stats(model, input_shape, dtype))


def summary(model: nn.Module, input_shape: Sequence[int],
            dtype=jnp.float32) -> str:
  """A plain-text per-layer table (leaf layers) with totals, for logging."""
  stats = layer_stats(model, input_shape, dtype)
  paths = [s.path for s in stats]
  def is_leaf(p):
    return not any(q != p and q.startswith(p + '/') for q in paths) and p != ''
  rows = [s for s in stats if is_leaf(s.path)]
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0),
                         jnp.zeros((1,) + tuple(input_shape)[-3:], dtype),
                         train=False))
  header = ('layer', 'type', 'output', 'params', 'MACs')
  table = [header] + [
      (r.path, r.kind, 'x'.join(map(str, r.output_shape)), f'{r.params:,}',
       f'{r.macs:,}') for r in rows]
  widths = [max(len(row[i]) for row in table) for i in range(len(header))]
  lines = []
  for row in table:
    cells = [c.ljust(w) if i < 3 else c.rjust(w)
             for i, (c, w) in enumerate(zip(row, widths))]
    lines.append('  '.join(cells).rstrip())
  lines.insert(1, '-' * len(lines[0]))
  totals = {k: param_count(v) for k, v in variables.items()}
  lines.append('-' * len(lines[0]))
  lines.append(f'{type(model).__name__} on {tuple(input_shape)[-3:]}: '
               f'{totals.get("params", 0):,} params'
               + ''.join(f', {n:,} {k}' for k, n in totals.items()
                         if k != 'params')
               + f', {sum(r.macs for r in stats):,} MACs per image')
  return '\n'.join(lines)
