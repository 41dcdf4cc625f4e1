"""One framework's benchmark runners in a process of their own.

Started by benchmarks/isolated.py as `python -m benchmarks.worker`; reads one
JSON request per line on stdin and answers one JSON line per request:

  {"op": "peak", "n": 2048, "precision": ""}  -> {"flops": ...}   (jaxcnn)
  {"op": "build", "key": "jaxcnn"|"torch"|"torch.compile"|"tf"|"tf+xla",
   "args": {benchmarks.run flags}, ...}       -> names, static info
  {"op": "warmup", "steps": n}                -> {}
  {"op": "train"|"eval", "steps": n}          -> {"times": {name: s/step}}
  {"op": "close"}                             -> {"info": {...}}, then exits

The process imports only its own framework (a TF worker never loads JAX or
torch) and keeps that framework's default threading unless --threads asks
otherwise. The answers go to a private copy of the original stdout; fd 1
itself is pointed at stderr, so whatever the frameworks print (Python or
C++) cannot corrupt the protocol. Failures come back as {"error": "..."}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from jaxcnn import hostmem


def _log(msg: str) -> None:
  print(f'[worker {os.getpid()}] {msg}', file=sys.stderr, flush=True)


class Worker:
  """The runners of one framework: timed train fns and eval runners."""

  def __init__(self):
    self.timed = []    # [(name, train fn, runner)]
    self.runners = []  # eval is timed on these
    self.key = None

  def peak(self, n: int, precision: str) -> dict:
    import jax.numpy as jnp
    from benchmarks import jax_bench
    # The peak in the dtype the convs run in (GPU fp32 matmuls may use TF32).
    dtype = jnp.bfloat16 if precision == 'bfloat16' else jnp.float32
    return {'flops': jax_bench.matmul_peak(n, dtype)}

  def build(self, key: str, args: dict, **kw) -> dict:
    self.key = key
    args = argparse.Namespace(**args)
    if key == 'jaxcnn':
      return self._build_jax(kw['model'], args)
    from benchmarks import run
    if args.threads:
      _set_threads(key, args.threads)
    r, why = run.build_reference(key, kw['model_name'], tuple(kw['shape']),
                                 kw['classes'], kw['params'], args)
    if r is None:
      return {'skipped': why}
    self.timed, self.runners = [(r.name, r.train, r)], [r]
    return self._built({})

  def _build_jax(self, model: str, args) -> dict:
    import jax
    from benchmarks import run
    config, runners, skipped = run.build_jax(model, args, _log)
    self.runners = runners
    self.timed, data_source = run.jax_timed(runners, args, skipped, _log)
    jr, d = runners[0], jax.devices()[0]
    return self._built({
        'skipped': skipped, 'data_source': data_source,
        'model_name': config.model.name, 'ema': bool(config.ema_decay),
        'input_shape': list(jr.input_shape), 'classes': jr.info.num_classes,
        'params': jr.params, 'macs': jr.macs,
        'device': {'platform': d.platform, 'kind': d.device_kind}})

  def _built(self, extra: dict) -> dict:
    from benchmarks.run import ENV_KEYS
    return {'pid': os.getpid(), 'names': [n for n, _, _ in self.timed],
            'eval_names': [r.name for r in self.runners],
            'env': {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
            **extra}

  def warmup(self, steps: int) -> dict:
    for _, fn, _ in self.timed:  # first-run allocations, caches
      fn(steps)
    for r in self.runners:
      r.eval(steps)
    return {}

  def train(self, steps: int) -> dict:
    return {'times': _time([(n, fn) for n, fn, _ in self.timed], steps)}

  def eval(self, steps: int) -> dict:
    return {'times': _time([(r.name, r.eval) for r in self.runners], steps)}

  def close(self) -> dict:
    from benchmarks import run
    info = {name: run.runner_info(r) for name, _, r in self.timed}
    for r in self.runners:
      r.close()
    return {'info': info}


def _time(fns, steps: int) -> dict:
  out = {}
  for name, fn in fns:
    t = time.perf_counter()
    fn(steps)
    out[name] = (time.perf_counter() - t) / steps
  return out


def _set_threads(key: str, n: int) -> None:
  """Caps this worker's framework only (benchmarks/reference/runners.
  set_threads would import both)."""
  if key.startswith('torch'):
    import torch
    torch.set_num_threads(n)
  else:
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)


_OPS = ('peak', 'build', 'warmup', 'train', 'eval', 'close')


def main() -> int:
  # As the jaxcnn CLI, before any thread allocates; a no-op for reference
  # workers (isolated.Proc sets JAXCNN_HOST_MALLOC=default for them).
  hostmem.keep_freed_memory()
  proto = os.fdopen(os.dup(1), 'w')  # the answers' private channel
  os.dup2(2, 1)                      # everything else printed -> stderr
  worker = Worker()
  for line in sys.stdin:
    req = json.loads(line)
    op = req.pop('op')
    try:
      if op not in _OPS:
        raise ValueError(f'unknown op {op!r}; valid: {", ".join(_OPS)}')
      reply = getattr(worker, op)(**req)
    except Exception as e:  # reported to the parent, which decides
      _log(traceback.format_exc())
      reply = {'error': f'{type(e).__name__}: {e}'.splitlines()[0][:300]}
    proto.write(json.dumps(reply) + '\n')
    proto.flush()
    if op == 'close':
      break
  return 0


if __name__ == '__main__':
  sys.exit(main())
