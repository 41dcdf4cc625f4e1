"""jaxcnn side of the benchmark harness: the real train and eval steps.

A runner owns one compiled step and its state; `train(n)` / `eval(n)` run n
steps and block, so the harness can time runners of several frameworks
interleaved. The train step is the one `python -m jaxcnn.main` runs
(train.make_train_fn: on-device augmentation, loss, momentum update, EMA where
the config has it, state donated).
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import experiment, parallel, steps, train
from jaxcnn.config_base import load_sibling
from jaxcnn.data import augment, datasets, pipeline
from jaxcnn.models import flops
from jaxcnn.ops import cpu_options

# Benchmarked model -> the config file (and argument) it is trained with.
MODEL_CONFIGS = {
    'lenet5': 'lenet5_mnist',
    'cifar10_tutorial': 'cifar10_tutorial',
    'alexnet_cifar': 'alexnet_cifar',
    'mobilenet_v2_cifar': 'mobilenet_v2_cifar',
    'resnet20_cifar': 'resnet20_cifar',
    # Needs no data files (sklearn's embedded digits): the harness smoke test.
    'lenet5_digits': 'quickstart',
}

# Named sets of XLA compile options, compiled into the same process so that
# they can be timed interleaved (XLA_FLAGS would need one process each).
# jaxcnn variants timed side by side in one process: (config overrides, extra
# XLA compile options). On one CPU device the default runs the convolutions
# on oneDNN (config.xla_cpu_conv='auto', jaxcnn/ops/cpu_options.py);
# 'eigen' keeps XLA's Eigen convolutions, 'ynnpack' is jaxlib 0.10.2's own
# default (convs and dots on YNNPACK), 'no_ynn' takes dots off YNNPACK too.
# 'onednn_bf16': oneDNN convolutions on bf16-rounded inputs (AVX512_BF16).
# 'xla_onednn_flag' / 'xnnpack' are XLA flags this jaxlib accepts but
# compiles to the same HLO (it is built without them): kept to show that
# (docs/performance.md).
VARIANTS = {
    'default': ({}, {}),
    'eigen': ({'xla_cpu_conv': 'eigen'}, {}),
    'ynnpack': ({'xla_cpu_conv': 'ynnpack'}, {}),
    'no_ynn': ({'xla_cpu_conv': 'eigen'},
               {'xla_cpu_experimental_ynn_fusion_type': ''}),
    'xla_onednn_flag': ({'xla_cpu_conv': 'eigen'}, {'xla_cpu_use_onednn': True}),
    'xnnpack': ({}, {'xla_cpu_use_xnnpack': True}),
    'bf16': ({'precision': 'bfloat16'}, {}),
    'onednn_bf16': ({'xla_cpu_conv': 'onednn_bf16'}, {}),
}


def load_config(model: str, configs_dir: str, batch_size: int,
                precision: str = ''):
  name = MODEL_CONFIGS.get(model)
  if name is None:
    raise KeyError(f'unknown benchmark model {model!r}; valid: '
                   f'{", ".join(MODEL_CONFIGS)}')
  config = load_sibling(f'{configs_dir}/{name}.py', name)
  config.batch_size = batch_size
  if precision:
    config.precision = precision
  return config


def matmul_peak(n: int = 2048, dtype=jnp.float32, repeats: int = 5) -> float:
  """Best FLOP/s of an n x n matmul on the default device (the 'peak')."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  f = jax.jit(lambda a, b: a @ b)
  jax.block_until_ready(f(a, b))
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(f(a, b))
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best


def _compiled_bytes(compiled) -> int | None:
  mem = compiled.memory_analysis()
  if mem is None:
    return None
  return int(mem.argument_size_in_bytes + mem.output_size_in_bytes
             + mem.temp_size_in_bytes - mem.alias_size_in_bytes)


class JaxRunner:
  """The jaxcnn train/eval step of one model on one device."""
  framework = 'jaxcnn'

  def __init__(self, model_name: str, config, compiler_options=None,
               variant: str = 'default', seed: int = 0):
    self.name = 'jaxcnn' if variant == 'default' else f'jaxcnn[{variant}]'
    self.config = config
    mesh = parallel.make_mesh(1, jax.devices()[:1])
    self.mesh = mesh
    # The conv library training would use here (oneDNN on one CPU device).
    model = experiment.build_model(
        config, cpu_options.model_conv(config.xla_cpu_conv, mesh))
    tx, schedule = experiment.make_optimizer(config, model,
                                             experiment.Plan(1000, 10**6))
    self.state = experiment.init_state(config, model, tx, mesh)
    sharding = jax.tree.map(lambda x: x.sharding, self.state)
    self._make_train = functools.partial(  # attach_device_data makes another
        train.make_train_fn, model, tx, schedule, config, self.state.params,
        mesh, sharding)
    fn = self._make_train()
    info = datasets.get_info(config.dataset.name)
    self.info = info
    rng = np.random.default_rng(seed)
    b = config.batch_size
    host = {'image': rng.integers(0, 256, (b, *info.image_shape), np.uint8),
            'label': rng.integers(0, info.num_classes, (b,), np.int32)}
    self.data_sharding = parallel.data_sharding(mesh)
    self.batch = pipeline.put_global(host, self.data_sharding)
    self.eval_batch = pipeline.put_global(
        {**host, 'mask': np.ones((b,), np.float32)}, self.data_sharding)
    spec = augment.spec_from_config(config.input)
    eval_fn = jax.jit(functools.partial(steps.eval_step, model=model,
                                        input_spec=spec))
    self.input_shape = experiment.input_shape(config)
    self.params = flops.param_count(self.state.params)
    self.macs = flops.count_macs(model, self.input_shape)
    opts = compiler_options or {}
    t = time.perf_counter()
    self._train = fn.lower(self.state, self.batch).compile(opts)
    self.compile_s = time.perf_counter() - t
    t = time.perf_counter()
    self._eval = eval_fn.lower(self.state.params, self.state.batch_stats,
                               self.eval_batch).compile(opts)
    self.eval_compile_s = time.perf_counter() - t
    self.memory_bytes = _compiled_bytes(self._train)
    # XLA's own count, to cross-check 6 x MACs (it also counts elementwise
    # work: augmentation, LRN, optimizer).
    cost = self._train.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.xla_flops_per_step = (cost or {}).get('flops')
    self._real = self._rows = None

  def train(self, n: int) -> float:
    # No device->host transfer may happen inside the timed loop.
    with jax.transfer_guard_device_to_host('disallow'):
      for _ in range(n):
        self.state, m = self._train(self.state, self.batch)
      jax.block_until_ready(m)
    return float(m['loss'])

  def eval(self, n: int) -> None:
    with jax.transfer_guard_device_to_host('disallow'):
      for _ in range(n):
        out = self._eval(self.state.params, self.state.batch_stats,
                         self.eval_batch)
      jax.block_until_ready(out)

  def _splits(self, data_dir: str | None):
    from jaxcnn.data import sources
    c = self.config
    return sources.load(c.dataset.name, data_dir=data_dir or c.data_dir,
                        cache_dir=c.cache_dir, allow_download=False)

  def attach_real_data(self, data_dir: str | None) -> str:
    """Feeds train_real() from the train loop's own iterator (real images,
    deterministic shuffle, background prefetch onto the device)."""
    c = self.config
    splits = self._splits(data_dir)
    self._real = pipeline.prefetch(
        pipeline.train_batches(splits.x_train, splits.y_train, c.batch_size,
                               c.seed),
        lambda b: pipeline.put_global(b, self.data_sharding))
    return splits.source

  def attach_device_data(self, data_dir: str | None) -> str:
    """Feeds train_device_data(): the real train split resident on the
    device (input.device_data), the host sending only row indices."""
    from jaxcnn.data import device_data
    c = self.config
    splits = self._splits(data_dir)
    data = device_data.put(splits.x_train, splits.y_train,
                           parallel.replicated(self.mesh))
    self._train_rows = self._make_train(train_data=data)
    self._rows = pipeline.prefetch(
        pipeline.train_row_batches(len(splits.x_train), c.batch_size, c.seed),
        lambda b: pipeline.put_global(b, self.data_sharding))
    return splits.source

  def train_device_data(self, n: int) -> float:
    for _ in range(n):
      self.state, m = self._train_rows(self.state, next(self._rows))
    jax.block_until_ready(m)
    return float(m['loss'])

  def train_real(self, n: int) -> float:
    for _ in range(n):
      self.state, m = self._train(self.state, next(self._real))
    jax.block_until_ready(m)
    return float(m['loss'])

  def close(self) -> None:
    for it in (self._real, self._rows):
      if it is not None:
        it.close()

  def peak_device_bytes(self) -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get('peak_bytes_in_use')
