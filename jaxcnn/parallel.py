"""Device mesh, shardings, the explicit-tower (pmap-style) step, and
jax.distributed start-up.

Default path ('jit'): one code path for 1 or N devices. The global batch is
sharded over the 'data' mesh axis and the state is replicated, so XLA inserts
the gradient all-reduce (the tutorial's tower averaging) and BatchNorm sees
global batch statistics. Parameters matching `config.shard_params` are instead
split over the 'model' axis (AlexNet's two-GPU split, generalised to a 2-D
mesh).

'pmap' path: the same pure train step runs per device under shard_map with an
explicit lax.pmean of the gradients: the tutorial's towers, spelled out.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcnn import config_checks
from jaxcnn.errors import ConfigError
from jaxcnn.losses import path_str

# Standard variables read when config.distributed fields are left empty.
ENV_COORDINATOR = 'JAX_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAX_PROCESS_ID'

PARALLEL_MODES = ('jit', 'pmap')


def maybe_initialize_distributed(dist_cfg) -> None:
  """Starts the multi-controller runtime when a coordinator is configured.

  Fields left empty fall back to the JAX_* variables above; with neither set,
  jax.distributed auto-detects SLURM/TPU pod environments only if
  `dist_cfg.auto` is True, and otherwise this is a single-process run.
  Must run before anything touches a JAX backend; a second call is a no-op, so
  a script may initialise first and then call train_and_evaluate.
  """
  if jax.distributed.is_initialized():
    return
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


def check_config(config) -> None:
  """Parallelism and jax.distributed fields, checked in pure Python before
  any device work (train runs this before maybe_initialize_distributed)."""
  config_checks.check_choice('parallel', config.parallel, PARALLEL_MODES)
  config_checks.check_int('mesh.model', config.mesh.model, 1)
  dist = config.distributed
  config_checks.check_int('distributed.num_processes', dist.num_processes, 0,
                          note=f' (0: ${ENV_NUM_PROCESSES})')
  config_checks.check_int('distributed.process_id', dist.process_id, -1,
                          hi=dist.num_processes or None,
                          note=f' (-1: ${ENV_PROCESS_ID})')
  try:
    re.compile(config.shard_params)
  except re.error as e:
    config_checks.bad(f'shard_params is not a valid regex: {e}')
  if config.parallel == 'pmap' and (config.mesh.model > 1 or
                                    config.shard_params):
    config_checks.bad(
        "parallel='pmap' is pure data parallelism (one full replica per "
        "device); use parallel='jit' with mesh.model > 1 and shard_params "
        'to split parameters over devices')


def make_mesh(model_axis: int = 1, devices=None) -> Mesh:
  """('data', 'model') mesh over `devices` (default: all, every process)."""
  devices = jax.devices() if devices is None else list(devices)
  n = len(devices)
  if model_axis < 1 or n % model_axis:
    raise ConfigError(f'mesh.model={model_axis} does not divide the {n} '
                      'devices')
  # Auto axes: XLA propagates shardings from the inputs, so the step body is
  # the same pure function for 1 and N devices.
  auto = jax.sharding.AxisType.Auto
  return jax.make_mesh((n // model_axis, model_axis), ('data', 'model'),
                       axis_types=(auto, auto), devices=devices)


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  """Mesh axes the batch is split over: 'data', and 'model' too when it has
  more than one device.

  Batch over 'model' as well means conv layers run purely data-parallel on a
  2-D mesh and only the 'model'-sharded fc layers are model-parallel
  (Krizhevsky's "one weird trick"). It also sidesteps an XLA SPMD bug
  (jax 0.10.2, Shardy and GSPMD): with the batch on 'data' alone and 'model'
  replicated, the kernel gradient of a grouped conv (AlexNet's groups=2,
  depthwise convs) comes out multiplied by the 'model' size.
  """
  return ('data', 'model') if mesh.shape.get('model', 1) > 1 else ('data',)


def data_sharding(mesh: Mesh) -> NamedSharding:
  axes = batch_axes(mesh)
  return NamedSharding(mesh, P(axes if len(axes) > 1 else axes[0]))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_global_batch(batch_size: int, mesh: Mesh, what: str = 'batch_size'
                       ) -> None:
  n = math.prod(mesh.shape[a] for a in batch_axes(mesh))
  if batch_size <= 0 or batch_size % n or batch_size % jax.process_count():
    raise ConfigError(
        f'{what}={batch_size} must be a positive multiple of the {n} data-'
        f'parallel devices ({jax.process_count()} processes): each device '
        f'gets batch/{n} examples. Try {what}={max(n, batch_size // n * n)}.')


def leaf_spec(name: str, shape: tuple[int, ...], pattern: str,
              model_size: int) -> P:
  """Splits the last (output-feature) axis of matching leaves over 'model'.

  The last axis, because that is how the paper split fc6/fc7 between its two
  GPUs: each held half of the neurons. Leaves whose last axis does not divide
  stay replicated (correct, only not smaller).
  """
  if (model_size == 1 or not pattern or not shape or
      shape[-1] % model_size or not re.search(pattern, name)):
    return P()
  return P(*([None] * (len(shape) - 1)), 'model')


def state_shardings(mesh: Mesh, state: Any, pattern: str = '') -> Any:
  """NamedSharding per leaf of `state` (arrays or ShapeDtypeStructs).

  `pattern` is searched in each leaf's path, e.g. 'params/fc6/kernel' and
  'opt_state/.../trace/fc6/kernel', so 'fc6|fc7' splits the weights together
  with their momentum and EMA copies.
  """
  size = mesh.shape['model']
  return jax.tree_util.tree_map_with_path(
      lambda p, x: NamedSharding(mesh, leaf_spec(
          path_str(p), tuple(x.shape), pattern, size)), state)


def bytes_per_device(tree: Any) -> dict[int, int]:
  """Bytes each device holds, read from the arrays' addressable shards."""
  out: dict[int, int] = collections.Counter()
  for x in jax.tree.leaves(tree):
    for s in x.addressable_shards:
      out[s.device.id] += s.data.nbytes
  return dict(out)


def abstract_bytes_per_device(tree: Any, shardings: Any) -> int:
  """Bytes on each device (shards are even) from shapes and shardings alone,
  so a 60M-parameter state can be sized without allocating it."""
  per_leaf = jax.tree.map(
      lambda x, s: int(jnp.dtype(x.dtype).itemsize) * int(
          math.prod(s.shard_shape(tuple(x.shape)))), tree, shardings)
  return sum(jax.tree.leaves(per_leaf))


# --- explicit towers ('pmap' path) -------------------------------------------

def pmean_gradients(tx: optax.GradientTransformation, axis: str
                    ) -> optax.GradientTransformation:
  """`tx` applied to the gradients averaged over `axis` (the towers).

  Same state as `tx` (not an optax.chain), so checkpoints and init_state are
  interchangeable between the 'jit' and 'pmap' paths.
  """
  def update(grads, state, params=None):
    return tx.update(jax.lax.pmean(grads, axis), state, params)
  return tx._replace(update=update)


def tower_step(step: Callable, mesh: Mesh, skip_nonfinite: bool) -> Callable:
  """shard_map of `step(state, batch)`: each device runs it on its rows.

  `step` must already average its gradients over 'data' (pmean_gradients).
  Each tower folds its index into the RNG so dropout and augmentation differ
  between towers, like the tutorial's independent towers; hence with those on
  the trajectory matches the 'jit' path in distribution, not bit for bit.
  """
  axis = 'data'

  def per_device(state, batch):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng),
                             jax.lax.axis_index(axis))
    new, metrics = step(state.replace(rng=jax.random.key_data(rng)), batch)
    new = new.replace(rng=state.rng)
    # One tower's NaN reaches every tower through pmean, but each tower's own
    # `finite` check sees only its rows: decide together or replicas diverge.
    bad = jax.lax.pmax(metrics['nonfinite'], axis)
    if skip_nonfinite:
      keep = state.replace(step=state.step + 1)
      new = jax.tree.map(lambda n, o: jnp.where(bad > 0, o, n), new, keep)
    metrics = jax.lax.pmean(metrics, axis)  # grad_norm: mean of tower norms
    return new, {**metrics, 'nonfinite': bad}

  # check_vma=False: gradients stay per-tower until the explicit pmean, as in
  # pmap; with it on, grad would psum the replicated params implicitly.
  mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(axis)),
                         out_specs=(P(), P()), check_vma=False)

  def run(state, batch):
    if state.batch_stats and mesh.shape[axis] > 1:
      # Flax BatchNorm without axis_name would normalise each tower by its
      # own rows and let the replicated statistics drift apart.
      raise ConfigError(
          "parallel='pmap' would compute BatchNorm statistics per device; use "
          "parallel='jit', which normalises with global batch statistics")
    return mapped(state, batch)
  return run


@dataclasses.dataclass(frozen=True)
class MemoryReport:
  """Per-device bytes of a state, replicated vs sharded (benchmarks, docs)."""
  total_bytes: int
  per_device_bytes: int

  @property
  def fraction(self) -> float:
    return self.per_device_bytes / max(self.total_bytes, 1)


def memory_report(abstract_state: Any, shardings: Any) -> MemoryReport:
  total = sum(int(jnp.dtype(x.dtype).itemsize) * math.prod(x.shape)
              for x in jax.tree.leaves(abstract_state))
  return MemoryReport(total, abstract_bytes_per_device(abstract_state,
                                                       shardings))


# Steps allowed in flight on XLA:CPU with several devices (see Throttle).
CPU_MULTI_DEVICE_INFLIGHT = 2


class Throttle:
  """Bounds how many dispatched programs may be queued but unfinished.

  Why (issue 16, seen with gdb on jaxlib 0.10.2): with N > 1 XLA:CPU
  devices, each device's share of a program runs as a task on the client's
  small thread pool, and a task waits on a device's in-flight semaphore
  while holding its pool thread. When the Python loop runs far ahead of the
  devices (asynchronous dispatch right after a host sync), queued tasks hold
  the pool while one device's share of a step sits in its all-reduce,
  waiting for the other device's share, which gets no thread: "Expected 2
  threads to join the rendezvous". Keeping at most `limit` programs in
  flight keeps the queue shorter than the pool (docs/scaling.md).
  GPUs, TPUs and a single CPU device are not throttled (limit 0).
  """

  def __init__(self, limit: int):
    self.limit = limit
    self._queue: collections.deque = collections.deque()

  @classmethod
  def for_mesh(cls, mesh: Mesh) -> 'Throttle':
    cpu_multi = (mesh.devices.flat[0].platform == 'cpu' and
                 len(mesh.local_devices) > 1)
    return cls(CPU_MULTI_DEVICE_INFLIGHT if cpu_multi else 0)

  def __call__(self, outputs: Any) -> Any:
    """Records `outputs` of a just-dispatched program; waits for the oldest
    when more than `limit` are in flight. Returns `outputs`."""
    if self.limit:
      self._queue.append(outputs)
      if len(self._queue) > self.limit:
        jax.block_until_ready(self._queue.popleft())
    return outputs
