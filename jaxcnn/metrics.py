"""Metric averaging, the TensorBoard writer, the tutorial's log line, tqdm,
and metrics.jsonl (one JSON object per log/eval step, read by jaxcnn/plots.py)."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

import jax
import numpy as np

from jaxcnn import summaries

try:  # tensorboard + pillow are pinned; a bare accelerator image may lack them
  from jaxcnn.events import EventWriter
  _NO_EVENTS = None
except ImportError as e:
  EventWriter, _NO_EVENTS = None, e


def is_time(step: int, every: int) -> bool:
  """True on multiples of `every` (step counts completed steps)."""
  return every > 0 and step % every == 0


def mean_metrics(history: list[dict]) -> dict[str, float]:
  """One device->host transfer for all steps since the last log."""
  host = jax.device_get(history)
  return {k: float(np.mean([h[k] for h in host])) for k in host[0]}


class _LogOnlyWriter:
  """Stand-in when tensorboard cannot be imported (e.g. a bare GPU box)."""

  def write_scalars(self, step, scalars):
    logging.info('step %d: %s', step, scalars)

  def write_texts(self, step, texts):
    del step, texts

  def write_images(self, step, images):
    del step, images

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def flush(self):
    pass

  def close(self):
    pass


def make_writer(workdir: str, is_main: bool, enabled: bool = True):
  """jaxcnn.events.EventWriter: TensorBoard files without importing TF (clu's
  writer did: +3.6 s and +540 MB RSS per training process, measured)."""
  if not is_main or not enabled:
    return _LogOnlyWriter()
  if EventWriter is None:
    logging.warning('TensorBoard writer unavailable (%s); logging only',
                    _NO_EVENTS)
    return _LogOnlyWriter()
  return EventWriter(workdir)


# Decay of the host-side moving average of the per-step loss (the TF
# tutorial's loss_averages uses 0.9).
LOSS_EMA_DECAY = 0.9
METRICS_FILE = 'metrics.jsonl'


class Reporter:
  """Writes train/eval metrics; only process 0 writes anything."""

  def __init__(self, workdir: str, total_steps: int, start_step: int,
               global_batch: int, log_every: int, summaries: bool = True):
    self.is_main = jax.process_index() == 0
    self.writer = make_writer(workdir, self.is_main, summaries)
    self.jsonl = (open(os.path.join(workdir, METRICS_FILE), 'a')
                  if self.is_main else None)
    self.loss_ema = None  # restarts on resume: it is a display aid only
    self.global_batch = global_batch
    self.log_every = log_every
    self._t = time.perf_counter()
    self._last_step = start_step
    self.pbar = None
    if self.is_main and sys.stderr.isatty():
      from tqdm import tqdm
      self.pbar = tqdm(total=total_steps, initial=start_step, unit='step',
                       dynamic_ncols=True)

  def progress(self, n: int = 1) -> None:
    if self.pbar is not None:
      self.pbar.update(n)

  def _log_json(self, step: int, split: str, values: dict) -> None:
    if self.jsonl is not None:
      self.jsonl.write(json.dumps({'step': step, 'split': split, **{
          k: float(v) for k, v in values.items()}}) + '\n')
      self.jsonl.flush()

  def train(self, step: int, history: list[dict]) -> dict[str, float]:
    host = jax.device_get(history)
    m = mean_metrics(host)
    for h in host:  # per step, so the average does not depend on log_every
      loss = float(h['loss'])
      self.loss_ema = loss if self.loss_ema is None else (
          LOSS_EMA_DECAY * self.loss_ema + (1 - LOSS_EMA_DECAY) * loss)
    m['loss_ema'] = self.loss_ema
    now = time.perf_counter()
    steps = max(step - self._last_step, 1)
    sec_per_batch = (now - self._t) / steps
    m['examples_per_sec'] = self.global_batch / sec_per_batch
    m['sec_per_batch'] = sec_per_batch
    self._t, self._last_step = now, step
    if self.is_main:
      line = (f'step {step}, loss = {m["loss"]:.3f} '
              f'({m["examples_per_sec"]:.1f} examples/sec; '
              f'{sec_per_batch:.3f} sec/batch)')
      self._print(line)
      self.writer.write_scalars(step, {f'train/{k}': v for k, v in m.items()})
      self._log_json(step, 'train', m)
    return m

  def reset_timer(self, step: int) -> None:
    """Excludes eval/checkpoint time from the next throughput figure."""
    self._t, self._last_step = time.perf_counter(), step

  def eval(self, step: int, results: dict[str, dict[str, float]]) -> None:
    if not self.is_main:
      return
    for name, r in results.items():
      suffix = '' if name == 'params' else f' ({name})'
      self._print(f'step {step}: precision @ 1 = {r["precision@1"]:.3f}'
                  f'{suffix}, top-5 = {r["top5"]:.3f}, loss = {r["loss"]:.4f}')
      self.writer.write_scalars(step, {f'eval_{name}/{k}': v
                                       for k, v in r.items()})
      self._log_json(step, f'eval_{name}', r)

  def summaries(self, step: int, summary_fn, *args) -> None:
    """Runs summary_fn(*args) (jaxcnn/summaries.py), writes its output, and
    leaves its time out of the next examples/sec figure."""
    jax.block_until_ready(args)  # the steps already queued still count
    t0 = time.perf_counter()
    host = jax.device_get(summary_fn(*args))
    if self.is_main:
      summaries.write(self.writer, step, host)
    self._t += time.perf_counter() - t0

  def text(self, step: int, key: str, value: str) -> None:
    if self.is_main:
      self.writer.write_texts(step, {key: value})

  def _print(self, line: str) -> None:
    if self.pbar is not None:
      self.pbar.write(line)
    else:
      print(line, flush=True)

  def close(self) -> None:
    if self.pbar is not None:
      self.pbar.close()
    self.writer.flush()
    self.writer.close()
    if self.jsonl is not None:
      self.jsonl.close()


def format_summary(results: dict[str, Any]) -> str:
  return ', '.join(f'{k}={v:.4f}' for k, v in sorted(results.items()))
