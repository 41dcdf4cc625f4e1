"""train_and_evaluate: wiring and the step loop, nothing else.

Data flow: uint8 host batches -> prefetch onto the mesh -> jitted train step
(augment, forward, loss, update, EMA) with the state donated -> metrics fetched
only on log steps -> eval / checkpoint on their own schedules.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxcnn import checkpoint, evaluate, experiment, parallel, steps
from jaxcnn import plugins as plugins_lib
from jaxcnn import summaries
from jaxcnn import workdir as run_dir
from jaxcnn.data import augment, device_data, pipeline, streaming
from jaxcnn.errors import CheckpointError, ConfigError, NonFiniteError
from jaxcnn.losses import param_mask
from jaxcnn.metrics import METRICS_FILE, Reporter, is_time
from jaxcnn.models import flops
from jaxcnn.ops import cpu_options
from jaxcnn.signals import Interrupted, SignalFlag

# Checkpoint metadata key of a streamed dataset's iterator state.
DATA_STATE_KEY = 'data_iterator'


def make_train_fn(model, tx, schedule, config, params_shape, mesh,
                  state_sharding=None, plugins=(), train_data=None):
  """Jitted `(state, global_batch) -> (state, metrics)`, state donated.

  'jit': steps.train_step as is; the batch is split over 'data' and XLA adds
  the gradient all-reduce. 'pmap': the same step per device with an explicit
  pmean of the gradients. `state_sharding` (a TrainState of shardings, e.g.
  from init_state) defaults to fully replicated. `plugins` reach the step
  explicitly; their extra_args (a frozen teacher's variables) are passed to
  every call. `train_data` (device_data.put) makes the batch `{'rows'}`,
  gathered inside the step.
  """
  towers = config.parallel == 'pmap'
  plugins = tuple(plugins)
  fn = functools.partial(
      steps.train_step, model=model,
      tx=parallel.pmean_gradients(tx, 'data') if towers else tx,
      schedule=schedule, options=steps.options_from_config(config),
      l2_mask=param_mask(params_shape, config.l2.include), plugins=plugins)
  if towers:
    fn = parallel.tower_step(fn, mesh, config.skip_nonfinite_updates)
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  state_sharding = repl if state_sharding is None else state_sharding
  # CPU only: XLA's convolutions on Eigen, not YNNPACK (the model's own
  # convs are oneDNN's where experiment.build chose so; ops/cpu_options.py).
  opts = cpu_options.train_compiler_options(mesh.devices.flat[0].platform,
                                            config.xla_cpu_conv)
  # Plugins' extra arguments and the resident train set are arguments, not
  # constants baked into the executable.
  extras = plugins_lib.extra_args(plugins)
  if any(e is not None for e in extras):
    extras = tuple(jax.device_put(e, repl) for e in extras)
  else:
    extras = ()
  lead = ()
  if train_data is not None:
    fn = device_data.gathering(fn)
    lead = (train_data,)
  step = jax.jit(fn, in_shardings=(state_sharding, data) +
                 (repl,) * (len(lead) + len(extras)),
                 out_shardings=(state_sharding, repl), donate_argnums=0,
                 compiler_options=opts)
  if not lead and not extras:
    return step
  return lambda state, batch: step(state, batch, *lead, *extras)


@dataclasses.dataclass
class _Run:
  """What set-up hands to the loop."""
  config: Any
  workdir: str
  mesh: Any
  splits: Any
  model: Any
  plan: Any
  ckpt: checkpoint.Checkpointer
  state: Any
  start: int
  train_fn: Any
  eval_fn: Any
  summary_fn: Any
  plugins: tuple = ()
  train_data: Any = None
  stream: Any = None  # a streamed dataset's train iterator (data/streaming)


def train_and_evaluate(config, workdir: str, plugins=()) -> dict:
  """Trains per `config`, resuming from `workdir` if it holds checkpoints.

  `plugins` (jaxcnn.plugins.Plugin) are what changes the training: the
  entry points build them from the config (jaxcnn.runs.plugins_for), so a
  compression or distillation config without them is refused here rather
  than silently trained as a plain run. Returns the final evaluation:
  {'params': {...}, 'ema': {...}}. The workdir is locked for this trainer
  from before the first read of its checkpoints until the last artifact is
  written.
  """
  parallel.check_config(config)
  # Before validate: jax.distributed must start before any backend use.
  parallel.maybe_initialize_distributed(config.distributed)
  experiment.validate(config)
  plugins = tuple(plugins)
  _check_plugins(config, plugins)
  mesh = parallel.make_mesh(config.mesh.model)
  parallel.check_global_batch(config.batch_size, mesh)
  parallel.check_global_batch(config.eval_batch_size, mesh, 'eval_batch_size')
  workdir = run_dir.prepare(workdir)  # nothing is created before this
  lock = run_dir.Lock(workdir)
  if jax.process_index() == 0:
    lock.acquire()
  try:
    run = _setup(config, workdir, mesh, plugins)
    try:
      state, results = _loop(run)
    finally:
      run.ckpt.close()
    _finish(run, state, results)
  finally:
    lock.release()
  return results


def _check_plugins(config, plugins: tuple) -> None:
  """A config that asks for a plugin must come with one (named alike)."""
  names = {p.name for p in plugins}
  wanted = experiment.plugin_names(config)
  missing = [n for n in wanted if n not in names]
  if missing:
    raise ConfigError(
        f'invalid config: it needs the {", ".join(missing)} plugin(s), but '
        'train_and_evaluate got none; train through python -m jaxcnn.main '
        'or jaxcnn.runs.train(config, workdir), which build them')


def _setup(config, workdir: str, mesh, plugins: tuple) -> _Run:
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                 config.keep_checkpoints, writer=True)
  if ckpt.latest_step() is not None:  # before any data: a refusal is quick
    run_dir.check_resume(workdir, config, ckpt.latest_step())
  splits, num_train = _data(config)
  p = experiment.plan(config, num_train)
  build = experiment.build(config, mesh, plugins, p)
  model, tx, schedule = build.model, build.tx, build.schedule
  state, start = checkpoint.restore_or_init(ckpt, build.state)
  if jax.process_index() == 0:
    run_dir.write_config(config, workdir)
  state_sharding = jax.tree.map(lambda x: x.sharding, build.state)
  train_data = None
  if config.input.device_data:
    train_data = device_data.put(splits.x_train, splits.y_train,
                                 parallel.replicated(mesh))
  train_fn = make_train_fn(model, tx, schedule, config, state.params, mesh,
                           state_sharding, plugins, train_data)
  eval_fn = evaluate.make_eval_fn(model, augment.spec_from_config(config.input),
                                  mesh, state_sharding, plugins)
  summary_fn = None  # images/histograms/sparsity: a separate jit, its own steps
  if config.summary_every_steps > 0 and config.write_summaries:
    summary_fn = summaries.make_summary_fn(config, model, state.params, mesh,
                                           state_sharding, plugins)
  return _Run(config, workdir, mesh, splits, model, p, ckpt, state, start,
              train_fn, eval_fn, summary_fn, plugins, train_data)


def _data(config):
  """(in-memory splits, or None for a streamed dataset; train size)."""
  if streaming.is_streaming(config):  # read by grain, step by step
    n = len(streaming.open_sources(config)[0])
    print(f'data: {config.dataset.name} streamed ({n} train images)',
          flush=True)
    return None, n
  splits = experiment.load_splits(config)
  logging.info('data: %s (%d train, %d test)', splits.source,
               len(splits.x_train), len(splits.x_test))
  print(f'data: {splits.source}', flush=True)
  return splits, len(splits.x_train)


def _stream(run: _Run):
  """A streamed dataset's train iterator at the run's position; on resume
  the iterator state saved with the checkpoint must be of the same data."""
  it = streaming.open_train(run.config, run.start, jax.process_index(),
                            jax.process_count())
  if jax.process_count() > 1:  # every host must have scanned the same data
    digest = hashlib.sha256(str(it.get_state()['source']).encode()).digest()
    multihost_utils.assert_equal(
        np.frombuffer(digest[:8], np.int64),
        'hosts see different streamed data (same dataset.root contents on '
        'every host?)')
  if run.start:
    saved = run.ckpt.custom_metadata(run.start).get(DATA_STATE_KEY)
    try:
      if saved:
        it.set_state(dict(saved, next_step=run.start))
    except ValueError as e:
      raise CheckpointError(f'cannot resume {run.workdir} at step '
                            f'{run.start}: the streamed data changed since '
                            f'it was saved: {e}') from None
  run.stream = it
  return it


def _batches(run: _Run):
  """(device batches, summary_batch) from the run's position."""
  config, splits = run.config, run.splits
  data_sharding = parallel.data_sharding(run.mesh)
  where = (run.start, jax.process_index(), jax.process_count())
  if splits is None:
    batches, summary_batch = _stream(run), lambda b: b
  elif run.train_data is not None:  # only row indices travel per step
    batches = pipeline.train_row_batches(len(splits.x_train), config.batch_size,
                                         config.seed, *where)
    # Summaries show the batch's images: gathered only on summary steps.
    gather = jax.jit(device_data.gather, out_shardings=data_sharding)
    summary_batch = lambda b: gather(run.train_data, b['rows'])
  else:
    batches = pipeline.train_batches(splits.x_train, splits.y_train,
                                     config.batch_size, config.seed, *where)
    summary_batch = lambda b: b
  return pipeline.prefetch(
      batches, lambda b: pipeline.put_global(b, data_sharding)), summary_batch


def _reporter(run: _Run) -> Reporter:
  config = run.config
  run_dir.repair_jsonl(os.path.join(run.workdir, METRICS_FILE))
  reporter = Reporter(run.workdir, run.plan.total_steps, run.start,
                      config.batch_size, config.log_every_steps,
                      config.write_summaries)
  if run.start == 0 and jax.process_index() == 0:
    table = flops.summary(run.model, experiment.input_shape(config))
    print(f'model {config.model.name}:\n{table}', flush=True)
    print(cpu_options.describe(config.xla_cpu_conv, run.mesh), flush=True)
    reporter.text(0, 'config', config.to_json_best_effort(indent=2))
    reporter.text(0, 'model_summary', table)
  return reporter


class _Guard:
  """Non-finite detection and the checkpoint bookkeeping around it.

  The loss of step s is computed from the state saved at step s - 1, so a
  non-finite loss at step s also condemns that checkpoint: it is moved to
  quarantine and the message names the one before as the last good one.
  """

  def __init__(self, run: _Run):
    self.run, self.history = run, []
    self.last_saved = run.start if run.start else None

  def _fail(self, detail: str, first_bad_state: int):
    ckpt = self.run.ckpt
    ckpt.wait()
    for s in ckpt.all_steps():
      if s >= first_bad_state:
        ckpt.quarantine(s, 'diverged')
    good = [s for s in ckpt.all_steps() if s < first_bad_state]
    raise NonFiniteError(
        f'{detail}; stopped. Last good checkpoint: '
        f'{"step " + str(good[-1]) if good else "none"} in {ckpt.directory}. '
        'Lower optim.learning_rate, or set skip_nonfinite_updates=True to '
        'skip such batches.')

  def check(self, step: int) -> None:
    """Fetches the history to the host (the only sync between logs)."""
    self.history = jax.device_get(self.history)
    bad = [i for i, h in enumerate(self.history) if h['nonfinite'] > 0]
    if bad and not self.run.config.skip_nonfinite_updates:
      first = step - len(self.history) + bad[0] + 1
      self._fail(f'loss or gradients became NaN/Inf at step {first}',
                 first - 1)

  def save(self, step: int, state, must: bool) -> None:
    if self.history:
      self.check(step)
    extra = None
    if self.run.stream is not None:  # batches are a function of the step
      extra = {DATA_STATE_KEY: dict(self.run.stream.get_state(),
                                    next_step=step)}
    try:
      self.run.ckpt.save(step, state, extra)
      self.last_saved = step
    except NonFiniteError as e:
      self._fail(str(e), step)
    except CheckpointError as e:
      if must:
        raise
      # The state is still in memory: keep training and retry at the
      # next checkpoint step rather than dying with the work.
      print(f'warning: {e} Training continues; the next checkpoint '
            'step retries.', file=sys.stderr, flush=True)


def _evaluate(run: _Run, state) -> dict:
  config = run.config
  if run.splits is None:
    stream = streaming.open_eval(config, config.eval_batch_size,
                                 jax.process_index(), jax.process_count())
    return evaluate.evaluate_state(run.eval_fn, state, None, None,
                                   config.eval_batch_size, run.mesh, stream)
  return evaluate.evaluate_state(run.eval_fn, state, run.splits.x_test,
                                 run.splits.y_test, config.eval_batch_size,
                                 run.mesh)


def _loop(run: _Run):
  config, total = run.config, run.plan.total_steps
  state, results, guard = run.state, None, _Guard(run)
  throttle = parallel.Throttle.for_mesh(run.mesh)
  batches, summary_batch = _batches(run)
  reporter = _reporter(run)
  try:
    with SignalFlag() as sig:
      for step in range(run.start + 1, total + 1):
        batch = next(batches)
        if run.summary_fn is not None and is_time(step,
                                                  config.summary_every_steps):
          reporter.summaries(step, run.summary_fn, state, summary_batch(batch))
        state, m = run.train_fn(state, batch)
        guard.history.append(throttle(m))
        reporter.progress()
        final = step == total
        if is_time(step, config.log_every_steps) or final or sig.signum:
          guard.check(step)
          reporter.train(step, guard.history)
          guard.history = []
        if is_time(step, config.checkpoint_every_steps) or final or sig.signum:
          guard.save(step, state, must=final or bool(sig.signum))
        if sig.signum:
          _stop(run.ckpt, sig.signum, step)
        if is_time(step, config.eval_every_steps) or final:
          results = _evaluate(run, state)
          reporter.eval(step, results)
          reporter.reset_timer(step)
    if results is None:  # resumed at the end: evaluate what is there
      results = _evaluate(run, state)
      reporter.eval(int(state.step), results)
  finally:
    batches.close()  # stops and joins the prefetch thread
    if run.stream is not None:
      run.stream.close()  # and grain's worker processes
    reporter.close()
  return state, results


def _stop(ckpt: checkpoint.Checkpointer, signum: int, step: int):
  ckpt.wait()
  where = (f'checkpoint of step {step} saved in {ckpt.directory}'
           if step in ckpt.all_steps() else
           f'no checkpoint of step {step} could be written (see above); '
           f'latest intact: {ckpt.latest_step()}')
  raise Interrupted(f'stopped by signal {signum} after step {step}; {where}. '
                    'Run the same command to resume.')


def _finish(run: _Run, state, results) -> None:
  """final_metrics.json, then each plugin's finish (artifact, report,
  plots), on process 0."""
  if jax.process_index() != 0:
    return
  with open(os.path.join(run.workdir, 'final_metrics.json'), 'w') as f:
    json.dump({'step': int(jax.device_get(state.step)), **results}, f,
              indent=2)
  done = plugins_lib.FinishInputs(run.config, run.workdir, run.model,
                                  jax.device_get(state), run.splits, results,
                                  run.plugins)
  for p in run.plugins:
    p.finish(done)
