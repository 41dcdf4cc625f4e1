"""train_and_evaluate: wiring and the step loop, nothing else.

Data flow: uint8 host batches -> prefetch onto the mesh -> jitted train step
(augment, forward, loss, update, EMA) with the state donated -> metrics fetched
only on log steps -> eval / checkpoint on their own schedules.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys

import jax

from jaxcnn import checkpoint, evaluate, experiment, parallel, steps
from jaxcnn.data import augment, device_data, pipeline, sources
from jaxcnn.errors import CheckpointError, JaxcnnError
from jaxcnn.losses import param_mask
from jaxcnn.metrics import Reporter, is_time
from jaxcnn.ops import cpu_options

# Exit code when SIGTERM/SIGINT stopped training after a final checkpoint.
EXIT_INTERRUPTED = 3


class NonFiniteError(JaxcnnError, FloatingPointError):
  """Loss or gradients became NaN/Inf."""


class Interrupted(JaxcnnError):
  """Training stopped by a signal after saving a checkpoint."""
  exit_code = EXIT_INTERRUPTED


class _SignalFlag:
  """Records SIGTERM/SIGINT so the loop can stop at a step boundary."""

  def __init__(self):
    self.signum = None
    self._old = {}

  def __enter__(self):
    for s in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[s] = signal.signal(s, self._handle)
      except ValueError:  # not the main thread (e.g. a notebook worker)
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.signum = signum

  def __exit__(self, *exc):
    for s, h in self._old.items():
      signal.signal(s, h)


def write_config(config, workdir: str) -> None:
  if jax.process_index() == 0:
    path = os.path.join(workdir, 'config.json')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
    os.replace(tmp, path)


def make_train_fn(model, tx, schedule, config, params_shape, mesh,
                  state_sharding=None, teacher=None, train_data=None):
  """Jitted `(state, global_batch) -> (state, metrics)`, state donated.

  'jit': steps.train_step as is; the batch is split over 'data' and XLA adds
  the gradient all-reduce. 'pmap': the same step per device with an explicit
  pmean of the gradients. `state_sharding` (a TrainState of shardings, e.g.
  from init_state) defaults to fully replicated. `teacher` (distill.Teacher)
  adds a frozen teacher, passed to every call. `train_data`
  (device_data.put) makes the batch `{'rows'}`, gathered inside the step.
  """
  from jaxcnn.compress import distill
  options = steps.StepOptions(
      input_spec=augment.spec_from_config(config.input),
      l2_loss_rate=config.l2.rate if config.l2.mode == 'loss' else 0.0,
      ema_decay=config.ema_decay,
      skip_nonfinite_updates=config.skip_nonfinite_updates,
      distill=distill.step_options(config),
      precision=config.precision)
  towers = config.parallel == 'pmap'
  fn = functools.partial(
      steps.train_step, model=model,
      tx=parallel.pmean_gradients(tx, 'data') if towers else tx,
      schedule=schedule, options=options,
      l2_mask=param_mask(params_shape, config.l2.include),
      teacher_model=teacher.model if teacher is not None else None)
  if towers:
    fn = parallel.tower_step(fn, mesh, config.skip_nonfinite_updates)
  repl, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  state_sharding = repl if state_sharding is None else state_sharding
  # CPU only: convolutions on XLA's Eigen kernels (jaxcnn/ops/cpu_options.py).
  opts = cpu_options.train_compiler_options(mesh.devices.flat[0].platform,
                                            config.xla_cpu_conv)
  # Teacher variables and the resident train set are arguments, not
  # constants baked into the executable.
  extra = []
  if train_data is not None:
    fn = device_data.gathering(fn)
    extra.append(train_data)
  if teacher is not None:
    extra.append(jax.device_put(teacher.variables, repl))
  step = jax.jit(fn, in_shardings=(state_sharding, data) + (repl,) * len(extra),
                 out_shardings=(state_sharding, repl), donate_argnums=0,
                 compiler_options=opts)
  if not extra:
    return step
  return lambda state, batch: step(state, batch, *extra)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains per `config`, resuming from `workdir` if it holds checkpoints.

  Returns the final evaluation: {'params': {...}, 'ema': {...}}.
  """
  parallel.check_config(config)
  # Before validate: jax.distributed must start before any backend use.
  parallel.maybe_initialize_distributed(config.distributed)
  experiment.validate(config)
  if config.compress.method == 'deep_compression':  # a chain of runs
    from jaxcnn.compress import pipeline as deep_compression
    return deep_compression.run(config, workdir)
  from jaxcnn.compress import distill
  teacher = distill.load_teacher(config)  # checked before data and compile
  mesh = parallel.make_mesh(config.mesh.model)
  parallel.check_global_batch(config.batch_size, mesh)
  parallel.check_global_batch(config.eval_batch_size, mesh, 'eval_batch_size')
  os.makedirs(workdir, exist_ok=True)

  splits = sources.load(config.dataset.name, data_dir=config.data_dir,
                        cache_dir=config.cache_dir,
                        tfds_data_dir=config.tfds_data_dir,
                        allow_download=config.dataset.allow_download)
  logging.info('data: %s (%d train, %d test)', splits.source,
               len(splits.x_train), len(splits.x_test))
  print(f'data: {splits.source}', flush=True)
  model = distill.wrap_model(config, experiment.build_model(config))
  p = experiment.plan(config, len(splits.x_train))
  tx, schedule = experiment.make_optimizer(config, model, p)
  template = experiment.init_state(config, model, tx, mesh)
  # Compression runs (config.compress / config.init_from) bring their own
  # optimizer wrapper and initial state; None leaves training untouched.
  from jaxcnn.compress import session as compress_session
  run = compress_session.start(config, model, schedule, template, mesh)
  if run is not None:
    tx, template = run.tx, run.state
    model = run.model  # xnor wraps the model to binarise layer inputs
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                 config.keep_checkpoints)
  state, start = checkpoint.restore_or_init(ckpt, template)
  write_config(config, workdir)

  state_sharding = jax.tree.map(lambda x: x.sharding, template)
  train_data = None
  if config.input.device_data:
    train_data = device_data.put(splits.x_train, splits.y_train,
                                 parallel.replicated(mesh))
  train_fn = make_train_fn(model, tx, schedule, config, state.params, mesh,
                           state_sharding, teacher, train_data)
  eval_fn = evaluate.make_eval_fn(model, augment.spec_from_config(config.input),
                                  mesh, state_sharding)
  if run is not None:  # e.g. SVD factors -> dense kernels for the model
    eval_fn = run.wrap_eval(eval_fn)
  summary_fn = None  # images/histograms/sparsity: a separate jit, its own steps
  if config.summary_every_steps > 0 and config.write_summaries:
    from jaxcnn import summaries
    summary_fn = summaries.make_summary_fn(
        config, model, getattr(tx, 'method', None), state.params, mesh,
        state_sharding)
  reporter = Reporter(workdir, p.total_steps, start, config.batch_size,
                      config.log_every_steps, config.write_summaries)
  if start == 0 and jax.process_index() == 0:
    from jaxcnn.models import flops
    table = flops.summary(model, experiment.input_shape(config))
    print(f'model {config.model.name}:\n{table}', flush=True)
    reporter.text(0, 'config', config.to_json_best_effort(indent=2))
    reporter.text(0, 'model_summary', table)
  data_sharding = parallel.data_sharding(mesh)
  where = (start, jax.process_index(), jax.process_count())
  if train_data is not None:  # only row indices travel per step
    batches = pipeline.train_row_batches(len(splits.x_train), config.batch_size,
                                         config.seed, *where)
    # Summaries show the batch's images: gathered only on summary steps.
    gather = jax.jit(device_data.gather, out_shardings=data_sharding)
    summary_batch = lambda b: gather(train_data, b['rows'])
  else:
    batches = pipeline.train_batches(splits.x_train, splits.y_train,
                                     config.batch_size, config.seed, *where)
    summary_batch = lambda b: b
  batches = pipeline.prefetch(
      batches, lambda b: pipeline.put_global(b, data_sharding))

  history, last_saved, results = [], start if start else None, None

  def check_finite(step):
    """Fetches `history` to the host (the only sync between logs)."""
    nonlocal history
    history = jax.device_get(history)
    bad = [i for i, h in enumerate(history) if h['nonfinite'] > 0]
    if bad and not config.skip_nonfinite_updates:
      first = step - len(history) + bad[0] + 1
      raise NonFiniteError(
          f'loss or gradients became NaN/Inf at step {first}; stopped without '
          f'saving. Last good checkpoint: '
          f'{"step " + str(last_saved) if last_saved else "none"} in '
          f'{ckpt.directory}. Lower optim.learning_rate, or set '
          'skip_nonfinite_updates=True to skip such batches.')

  try:
    with _SignalFlag() as sig:
      for step in range(start + 1, p.total_steps + 1):
        batch = next(batches)
        if summary_fn is not None and is_time(step,
                                              config.summary_every_steps):
          reporter.summaries(step, summary_fn, state, summary_batch(batch))
        state, m = train_fn(state, batch)
        history.append(m)
        reporter.progress()
        final = step == p.total_steps
        if is_time(step, config.log_every_steps) or final or sig.signum:
          check_finite(step)
          reporter.train(step, history)
          history = []
        if is_time(step, config.checkpoint_every_steps) or final or sig.signum:
          if history:
            check_finite(step)
          try:
            ckpt.save(step, state)
            last_saved = step
          except CheckpointError as e:
            if final or sig.signum:
              raise
            # The state is still in memory: keep training and retry at the
            # next checkpoint step rather than dying with the work.
            print(f'warning: {e} Training continues; the next checkpoint '
                  'step retries.', file=sys.stderr, flush=True)
        if sig.signum:
          ckpt.wait()
          raise Interrupted(
              f'stopped by signal {sig.signum} after step {step}; checkpoint '
              f'saved in {ckpt.directory}. Run the same command to resume.')
        if is_time(step, config.eval_every_steps) or final:
          results = evaluate.evaluate_state(
              eval_fn, state, splits.x_test, splits.y_test,
              config.eval_batch_size, mesh)
          reporter.eval(step, results)
          reporter.reset_timer(step)
    if results is None:  # resumed at the end: evaluate what is there
      results = evaluate.evaluate_state(eval_fn, state, splits.x_test,
                                        splits.y_test, config.eval_batch_size,
                                        mesh)
      reporter.eval(int(state.step), results)
  finally:
    batches.close()  # stops and joins the prefetch thread
    ckpt.close()
    reporter.close()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'final_metrics.json'), 'w') as f:
      json.dump({'step': int(jax.device_get(state.step)), **results}, f,
                indent=2)
    if run is not None:  # artifact + compression_report.json
      compress_session.finish(run, state, splits, workdir, results)
    elif config.end_plots and jax.process_count() == 1:
      from jaxcnn import plots  # curves, confusion matrix, filters (PNG)
      plots.end_of_training(config, model, state, splits, workdir)
  return results

