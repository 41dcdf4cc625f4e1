"""Layers and activations shared by the model families."""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def scaled_tanh(x: jax.Array) -> jax.Array:
  """LeCun et al. 1998, appendix A: f(a) = 1.7159 tanh(2a/3)."""
  return 1.7159 * jnp.tanh(2.0 * x / 3.0)


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    # The AlexNet tutorial's example slope for Leaky ReLU is 0.1.
    'leaky_relu': lambda x: nn.leaky_relu(x, negative_slope=0.1),
    'softplus': nn.softplus,
    'tanh': jnp.tanh,
    'scaled_tanh': scaled_tanh,
    'sigmoid': nn.sigmoid,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in _ACTIVATIONS:
    raise ValueError(
        f'unknown activation {name!r}; valid: {", ".join(sorted(_ACTIVATIONS))}')
  return _ACTIVATIONS[name]
