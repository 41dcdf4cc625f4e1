"""Plumbing between train.py and a compression method.

start():  load the dense checkpoint named by config.init_from, apply the
          method's one-shot `convert`, wrap the optimizer, and build the
          initial TrainState (also the restore template, so a resumed
          compression run restores masks and factors from its own workdir).
finish(): export the fine-tuned net, write the artifact and the dense
          baseline as real files, load the artifact back, check its logits,
          measure accuracy / MACs / latency and write the report.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import experiment, optim, parallel
from jaxcnn import workdir as run_dir
from jaxcnn.compress import apply, base, report, storage, structured
from jaxcnn.compress import lowrank, prune  # noqa: F401 (registers methods)
from jaxcnn.compress import binary  # noqa: F401 (registers methods)
from jaxcnn.compress import kmeans  # noqa: F401 (registers methods)
from jaxcnn.compress import calibrate, fixed_point, pq  # noqa: F401
from jaxcnn.data import augment
from jaxcnn.errors import CheckpointError, ConfigError
from jaxcnn.state import TrainState


@dataclasses.dataclass
class Session:
  config: Any
  model: Any
  method: base.Method | None
  tx: Any
  state: TrainState
  dense: dict


def start(config, model, schedule, template, mesh, restore_only: bool = False
          ) -> Session | None:
  """None for ordinary training (no compress.method and no init_from).

  restore_only: a session whose state only has the right structure and
  shapes, to restore the run's own checkpoints into (--mode=eval); the
  dense checkpoint named by init_from is not read.
  """
  try:
    method = base.get_method(config.compress)
  except ValueError as e:
    raise ConfigError(f'invalid config: compress.method: {e}') from None
  if method is None and not config.init_from:
    return None
  if config.init_from and not restore_only:
    try:
      dense = run_dir.load_weights(config.init_from, config.init_from_weights)
    except CheckpointError as e:
      raise CheckpointError(f'init_from: {e}') from None
  else:
    dense = {'params': jax.device_get(template.params), 'weights': 'init',
             'batch_stats': jax.device_get(template.batch_stats), 'step': 0}
  shapes = lambda t: jax.tree.map(np.shape, t)
  if shapes(dense['params']) != shapes(jax.device_get(template.params)):
    raise CheckpointError(f'init_from={config.init_from}: its parameters do '
                          f'not fit model {config.model.name!r}')
  try:
    if method is not None and method.needs_graph:
      method.bind(structured.Graph(model, experiment.input_shape(config)))
    if method is not None and method.needs_calibration:
      method.set_calibration(model, calibrate.calibration_images(
          config, method.cfg.calib_batches), dense['batch_stats'])
    params = method.convert(dense['params']) if method else dense['params']
    params = jax.tree.map(jnp.asarray, params)
    tx = optim.make_tx(config, params, schedule)
    if method is not None:
      tx = method.wrap_tx(tx)
    opt_state = tx.init(params)  # masks etc.: a regex matching nothing fails
  except ValueError as e:
    # init_from without a method is a plain fine-tune: the error is in optim.
    where = f'compress.{method.name}' if method is not None else 'optim'
    raise ConfigError(f'invalid config: {where}: {e}') from None
  if method is not None:
    model = method.wrap_model(model)  # xnor: binarised layer inputs
  state = TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=jax.tree.map(jnp.asarray, dense['batch_stats']),
      opt_state=opt_state,
      ema_params=jax.tree.map(jnp.copy, params) if config.ema_decay else {},
      rng=template.rng)
  # The same placement as ordinary training: leaves matching shard_params
  # split over 'model', the rest replicated (masks follow their kernels).
  state = jax.device_put(state, parallel.state_shardings(
      mesh, state, config.shard_params))
  return Session(config, model, method, tx, state, dense)


def artifact_meta(config, method: str) -> dict:
  """What an artifact needs to run alone: the model, its dataset, and the
  eval preprocessing (compress/artifact_model.py reads it back)."""
  return {'model': config.model.name,
          'model_kwargs': experiment.model_kwargs(config),
          'dataset': config.dataset.name,
          'input_shape': list(experiment.input_shape(config)),
          'input': config.input.to_dict(), 'method': method}


def _logits_fn(model, spec):
  @jax.jit
  def fn(variables, images):
    # binary.apply_any: an xnor model's input interceptor must run first.
    return binary.apply_any(model, variables,
                            augment.preprocess_eval(images, spec))
  return fn


def accuracy(fn, variables, x, y, batch: int = 1000) -> float:
  correct = 0
  for i in range(0, len(x), batch):
    logits = fn(variables, x[i:i + batch])
    correct += int(np.sum(np.argmax(np.asarray(logits), -1) == y[i:i + batch]))
  return correct / len(x)


def latency_ms(fn, variables: list, x, rounds: int = 15) -> list[float]:
  """Median ms per image of a jitted batch forward for each of `variables`,
  timed in interleaved rounds so a busy shared CPU slows all alike."""
  for v in variables:
    jax.block_until_ready(fn(v, x))
  times = [[] for _ in variables]
  for _ in range(rounds):
    for i, v in enumerate(variables):
      t = time.perf_counter()
      jax.block_until_ready(fn(v, x))
      times[i].append(time.perf_counter() - t)
  return [1000.0 * float(np.median(t)) / len(x) for t in times]


def inference_variables(method, graph, params, mstate, batch_stats) -> dict:
  """What the artifact stores: masked / compacted / factorized weights."""
  exp = method.export(params, mstate)
  params, extra = exp['params'], {}
  if 'keep' in exp:
    params, batch_stats, extra = structured.compact(graph, params,
                                                    batch_stats, exp['keep'])
  out = {'params': jax.tree.map(np.asarray, params),
         'batch_stats': jax.tree.map(np.asarray, batch_stats or {})}
  if extra:
    out['compress'] = extra
  return out, exp['meta']


def finish(session: Session, state, splits, workdir: str, results: dict,
           ) -> dict:
  config, model, method = session.config, session.model, session.method
  if method is None:
    return {}
  spec = augment.spec_from_config(config.input)
  shape = experiment.input_shape(config)
  graph = getattr(method, 'graph', None)
  # The configured weights (config.weights), never the test-set winner.
  use_ema = run_dir.choose_weights(config.weights, bool(state.ema_params),
                                   workdir) == 'ema'
  state = jax.device_get(state)
  params = state.ema_params if use_ema else state.params
  mstate = state.opt_state.method
  fn = _logits_fn(model, spec)
  x, y = splits.x_test, splits.y_test
  enc = config.compress.encoding if method.name == 'prune' else 'dense'
  enc = getattr(method, 'encoding', enc)  # binary methods: bit-packed
  model_meta = artifact_meta(config, method.name)

  dense_vars = {'params': session.dense['params'],
                'batch_stats': session.dense['batch_stats']}
  dense_path = os.path.join(workdir, 'dense.jxcz')
  dense_bytes = storage.save(dense_path, dense_vars, model_meta)
  comp_vars, meta = inference_variables(method, graph, params, mstate,
                                        state.batch_stats)
  art_path = os.path.join(workdir, 'model.jxcz')
  comp_bytes = storage.save(art_path, comp_vars, {**model_meta, **meta},
                            enc, config.compress.index_bits)
  loaded, _ = storage.load(art_path)
  probe = x[:500]
  ref = np.asarray(fn(comp_vars, probe))
  got = np.asarray(fn(loaded, probe))
  train_view = np.asarray(fn({'params': method.eval_params(
      method.pre_forward(params, mstate)), 'batch_stats': state.batch_stats},
      probe))

  oneshot_params = method.convert(session.dense['params'])
  oneshot_state = method.oneshot(jax.tree.map(jnp.asarray, oneshot_params))
  before_vars, _ = inference_variables(method, graph, oneshot_params,
                                       oneshot_state,
                                       session.dense['batch_stats'])
  # The dense baseline runs with float inputs (xnor wraps the model).
  dense_fn = _logits_fn(model.model if isinstance(
      model, binary.InterceptedModel) else model, spec)
  acc = {'dense': accuracy(dense_fn, dense_vars, x, y),
         'compressed_before_finetune': accuracy(fn, before_vars, x, y),
         'compressed_after_finetune': accuracy(fn, loaded, x, y)}
  bench = x[:200]
  dense_ms, comp_ms = latency_ms(fn, [dense_vars, loaded], bench)
  lat = {'dense_ms_per_image': dense_ms, 'compressed_ms_per_image': comp_ms,
         'device': jax.default_backend(),
         'note': 'sparse artifacts decode to dense arrays: no speed-up'
                 if method.name == 'prune' else ''}
  rep = report.build(
      model_meta, dense_vars, comp_vars, dense_bytes, comp_bytes,
      apply.count_macs(model, dense_vars, shape),
      apply.count_macs(model, loaded, shape), acc, lat,
      extra={'weights_used': 'ema' if use_ema else 'params',
             'init_from': config.init_from,
             'init_from_step': session.dense['step'],
             'init_from_weights': session.dense['weights'],
             'fine_tune_steps': int(state.step),
             'method_meta': meta,
             'artifact': os.path.basename(art_path),
             'roundtrip_identical_logits': bool(np.array_equal(ref, got)),
             'max_abs_diff_vs_training_model': float(
                 np.max(np.abs(ref - train_view))),
             'train_eval': results})
  report.write(workdir, rep)
  return rep
