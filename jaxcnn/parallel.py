"""Device mesh, shardings and jax.distributed start-up.

One code path for 1 or N devices: the global batch is sharded over the 'data'
mesh axis and the state is replicated, so XLA inserts the gradient all-reduce
(the tutorial's tower averaging) and BatchNorm sees global batch statistics.
"""
from __future__ import annotations

import logging
import os

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcnn.errors import ConfigError

# Standard variables read when config.distributed fields are left empty.
ENV_COORDINATOR = 'JAX_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAX_PROCESS_ID'


def maybe_initialize_distributed(dist_cfg) -> None:
  """Starts the multi-controller runtime when a coordinator is configured.

  Fields left empty fall back to the JAX_* variables above; with neither set,
  jax.distributed auto-detects SLURM/TPU pod environments only if
  `dist_cfg.auto` is True, and otherwise this is a single-process run.
  """
  addr = dist_cfg.coordinator_address or os.environ.get(ENV_COORDINATOR)
  nproc = dist_cfg.num_processes or int(os.environ.get(ENV_NUM_PROCESSES, 0))
  pid = dist_cfg.process_id
  if pid < 0:
    pid = int(os.environ.get(ENV_PROCESS_ID, -1))
  if addr:
    if nproc <= 0 or pid < 0:
      raise ConfigError(
          f'distributed coordinator {addr} is set but num_processes={nproc} '
          f'and process_id={pid}; set config.distributed.* or {ENV_NUM_PROCESSES}'
          f' and {ENV_PROCESS_ID}')
    logging.info('jax.distributed.initialize(%s, %d, %d)', addr, nproc, pid)
    jax.distributed.initialize(addr, num_processes=nproc, process_id=pid)
  elif dist_cfg.auto:
    jax.distributed.initialize()


def make_mesh(model_axis: int = 1) -> Mesh:
  n = jax.device_count()
  if model_axis < 1 or n % model_axis:
    raise ConfigError(f'model axis {model_axis} does not divide the {n} '
                      'devices')
  # Auto axes: XLA propagates shardings from the inputs, so the step body is
  # the same pure function for 1 and N devices.
  auto = jax.sharding.AxisType.Auto
  return jax.make_mesh((n // model_axis, model_axis), ('data', 'model'),
                       axis_types=(auto, auto))


def data_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_global_batch(batch_size: int, mesh: Mesh, what: str = 'batch_size'
                       ) -> None:
  n = mesh.shape['data']
  if batch_size <= 0 or batch_size % n or batch_size % jax.process_count():
    raise ConfigError(
        f'{what}={batch_size} must be a positive multiple of the {n} data-'
        f'parallel devices ({jax.process_count()} processes): each device '
        f'gets batch/{n} examples. Try {what}={max(n, batch_size // n * n)}.')
