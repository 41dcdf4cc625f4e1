"""Helpers for tests that need 8 devices: test_parallel.py and
test_parallel_sharding.py.

pytest's own process has already initialised JAX with one CPU device, so each
of those files runs its multi-device checks once, together, in a subprocess
started with --xla_force_host_platform_device_count=8: the test file itself,
run as a script (`python tests/test_parallel.py` prints one JSON line).
`run_worker` starts it and returns that line; the tests assert on it. By
hand: PYTHONPATH=. XLA_FLAGS=--xla_force_host_platform_device_count=8
python tests/test_parallel.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = 8


# --- inside the worker (8 fake CPU devices) ----------------------------------

def make_config(name, arg=None, **overrides):
  from jaxcnn.config_base import load_sibling
  c = load_sibling(os.path.join(ROOT, 'configs', 'x.py'), name, arg)
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def random_batches(config, n, batch, seed=0):
  import numpy as np
  from jaxcnn.data import datasets
  info = datasets.get_info(config.dataset.name)
  rng = np.random.default_rng(seed)
  return [{'image': rng.integers(0, 256, (batch, *info.image_shape), np.uint8),
           'label': rng.integers(0, info.num_classes, (batch,), np.int32)}
          for _ in range(n)]


def initial_state(config, mesh):
  """Host copy of experiment.init_state, and the fc6 spec it was made with.
  Runs of the same model share it: each init compile costs seconds."""
  import jax
  from jaxcnn import experiment
  model = experiment.build_model(config)
  tx, _ = experiment.make_optimizer(config, model, experiment.Plan(10, 100))
  state = experiment.init_state(config, model, tx, mesh)
  fc6 = state.params.get('fc6', {}).get('kernel')
  return jax.device_get(state), None if fc6 is None else str(fc6.sharding.spec)


def run_steps(config, mesh, batches, init, max_traces=0, device_data=False):
  """Runs the real make_train_fn over `batches` from the host state `init`;
  returns (host state, losses, train_fn, live state). max_traces > 0 wraps
  the step in chex.assert_max_traces. device_data: the batches' images live
  on the devices and each step gets their row indices."""
  import chex
  import jax
  import numpy as np
  from jaxcnn import experiment, parallel, steps, train
  from jaxcnn.data import device_data as dd
  from jaxcnn.data import pipeline
  train_data = None
  if device_data:
    train_data = dd.put(np.concatenate([b['image'] for b in batches]),
                        np.concatenate([b['label'] for b in batches]),
                        parallel.replicated(mesh))
    n = len(batches[0]['label'])
    batches = [{'rows': np.arange(i * n, (i + 1) * n, dtype=np.int32)}
               for i in range(len(batches))]
  model = experiment.build_model(config)
  tx, schedule = experiment.make_optimizer(config, model,
                                           experiment.Plan(10, 100))
  sharding = parallel.state_shardings(mesh, init, config.shard_params)
  state = jax.device_put(init, sharding)
  original = steps.train_step
  if max_traces:
    chex.clear_trace_counter()  # chex counts per function across wrappers
    steps.train_step = chex.assert_max_traces(original, n=max_traces)
  try:
    fn = train.make_train_fn(model, tx, schedule, config, state.params, mesh,
                             sharding, train_data=train_data)
  finally:
    steps.train_step = original
  losses = []
  for b in batches:
    state, m = fn(state, pipeline.put_global(b, parallel.data_sharding(mesh)))
    losses.append(float(m['loss']))
  return jax.device_get(state), losses, fn, state


def max_diff(a, b):
  """Largest |a - b| over all leaves, relative to the largest |a| (>= 1)."""
  import jax
  import numpy as np
  pairs = [(np.asarray(x, np.float64), np.asarray(y, np.float64))
           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
  scale = max([1.0] + [float(np.max(np.abs(x))) for x, _ in pairs if x.size])
  return max([float(np.max(np.abs(x - y))) for x, y in pairs if x.size] +
             [0.0]) / scale


def check(out, name, fn):
  """out[name] = fn(), or its error; and how long it took."""
  t = time.perf_counter()
  try:
    out[name] = fn()
  except Exception as e:  # reported, so one failure doesn't hide the rest
    out[name] = {'error': f'{type(e).__name__}: {e}'[:2000]}
  out[name + '_seconds'] = round(time.perf_counter() - t, 1)


def worker_main(checks: dict) -> None:
  """Runs {name: fn} in order and prints RESULT {name: output ...}."""
  out = {}
  for name, fn in checks.items():
    check(out, name, fn)
  print('RESULT ' + json.dumps(out), flush=True)


# --- in pytest's process -----------------------------------------------------

def run_worker(path: str) -> dict:
  """Runs the test file `path` as the 8-device worker; its RESULT dict."""
  # LLVM -O0: compiling dominates these few-step runs (init 15 s -> 2 s on
  # 2 loaded cores); every compared run uses the same flags.
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={DEVICES} '
             '--xla_backend_optimization_level=0')
  proc = subprocess.run([sys.executable, os.path.abspath(path)], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=600)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
  assert proc.returncode == 0 and lines, proc.stderr[-3000:]
  return json.loads(lines[-1][len('RESULT '):])


def ok(r: dict) -> dict:
  assert 'error' not in r, r.get('error')
  return r
