"""TrainState: everything a resumed run needs, as one pytree of arrays."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

PyTree = Any


@flax.struct.dataclass
class TrainState:
  step: jax.Array           # int32 scalar: completed optimizer steps
  params: PyTree
  batch_stats: PyTree       # BatchNorm running statistics ({} if none)
  opt_state: PyTree
  ema_params: PyTree        # EMA of params ({} when EMA is off)
  rng: jax.Array            # raw uint32 key data; typed keys don't checkpoint


def create(model, tx, rng: jax.Array, image_shape: tuple[int, ...],
           use_ema: bool) -> TrainState:
  """Initialises params from `rng` (a typed key) and a [1, H, W, C] dummy."""
  init_rng, state_rng = jax.random.split(rng)
  variables = model.init({'params': init_rng, 'dropout': init_rng},
                         jnp.zeros((1, *image_shape), jnp.float32), train=False)
  params = variables['params']
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get('batch_stats', {}),
      opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params) if use_ema else {},
      rng=jax.random.key_data(state_rng),
  )
