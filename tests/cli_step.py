"""The train step the CLI builds (experiment.build + train.make_train_fn),
run for a few steps on one fixed batch: shared by the conv-library tests
(test_conv_onednn.py, test_conv_onednn_bf16.py)."""
from __future__ import annotations

import jax
import numpy as np

from jaxcnn import experiment, parallel, train
from jaxcnn.data import pipeline


def run_steps(config, xla_cpu_conv: str, steps: int, pixel_max: int,
              batch_size: int = 8):
  """(optimised HLO text, per-step losses, final state) of `config` with
  `xla_cpu_conv`, on one CPU device and one batch of 8x8x1 uint8 images
  with pixels below `pixel_max`."""
  c = config.copy_and_resolve_references()
  c.xla_cpu_conv, c.batch_size = xla_cpu_conv, batch_size
  mesh = parallel.make_mesh(1, jax.devices()[:1])
  b = experiment.build(c, mesh, p=experiment.Plan(100, 100))
  fn = train.make_train_fn(b.model, b.tx, b.schedule, c, b.state.params,
                           mesh, jax.tree.map(lambda v: v.sharding, b.state))
  rng = np.random.default_rng(0)
  batch = pipeline.put_global(
      {'image': rng.integers(0, pixel_max, (batch_size, 8, 8, 1), np.uint8),
       'label': rng.integers(0, 10, (batch_size,), np.int32)},
      parallel.data_sharding(mesh))
  hlo = fn.lower(b.state, batch).as_text()
  state, losses = b.state, []
  for _ in range(steps):
    state, m = fn(state, batch)
    losses.append(float(m['loss']))
  return hlo, losses, state
