"""benchmarks.run's default mode: one process per framework, rounds interleaved.

Why: in one Python process TF and torch ran at about a quarter of their
own-process speed beside JAX (thread pools of three runtimes competing, issue
18), so an in-process comparison flatters jaxcnn. Here each framework's
runners live in a worker process (benchmarks/worker.py) with its default
threading; each worker is built and warmed up once, then kept alive while the
parent drives the rounds over stdin/stdout: train round r times `steps` steps
in the jaxcnn process, then in each reference process in --frameworks order;
the eval rounds follow the same way. Only one worker computes at a time (the
others block reading stdin), and os.getloadavg() is recorded before every
round, so a noisy round can be told apart.
"""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time

from benchmarks import run

ROOT = run.ROOT


class WorkerError(RuntimeError):
  """A request the worker answered with an error, or a worker that died."""


class Proc:
  """A benchmarks.worker subprocess and its JSON-lines channel."""

  def __init__(self, key: str):
    self.key = key
    env = dict(os.environ)
    env.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')  # TF start-up noise only
    if key.startswith('tf'):  # TF's own default (oneDNN on), whatever the
      env.pop('TF_ENABLE_ONEDNN_OPTS', None)  # parent's environment says
    # jaxcnn's process keeps freed memory as its CLI does (jaxcnn/hostmem.py);
    # the references keep their runtime's default allocator behaviour.
    env['JAXCNN_HOST_MALLOC'] = 'keep' if key == 'jaxcnn' else 'default'
    self.proc = subprocess.Popen(
        [sys.executable, '-m', 'benchmarks.worker'], cwd=ROOT, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    self.pid = self.proc.pid

  def ask(self, op: str, **kw) -> dict:
    try:
      self.proc.stdin.write(json.dumps({'op': op, **kw}) + '\n')
      self.proc.stdin.flush()
      line = self.proc.stdout.readline()
    except BrokenPipeError:
      line = ''
    if not line:
      raise WorkerError(f'{self.key} worker (pid {self.pid}) exited with '
                        f'code {self.proc.wait()} during {op!r}; its stderr '
                        'says why')
    reply = json.loads(line)
    if 'error' in reply:
      raise WorkerError(f"{self.key} worker, {op}: {reply['error']}")
    return reply

  def close(self) -> dict:
    """The runners' final info (peak memory); the process is gone after."""
    info = {}
    if self.proc.poll() is None:
      try:
        info = self.ask('close').get('info', {})
      except WorkerError:
        pass
    try:
      self.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
    return info


def _start_references(args, jb: dict, skipped: dict, log) -> list:
  """[(Proc, build reply)] for the reference frameworks asked for, each
  built in its own process, one after the other (compile times stay
  comparable); the missing or failing ones are skipped with the reason."""
  from benchmarks.reference import runners as ref
  out = []
  for key in args.frameworks.split(','):
    if key == 'jaxcnn':
      continue
    name = run.REF_NAMES[key]
    why = ref.available('torch' if key.startswith('torch') else 'tf')
    if not why:
      w = Proc(key)
      try:
        b = w.ask('build', key=key, args=vars(args),
                  model_name=jb['model_name'], shape=jb['input_shape'],
                  classes=jb['classes'], params=jb['params'])
        why = b.get('skipped', '')
      except WorkerError as e:
        why = str(e)
      if why:
        w.close()
      else:
        out.append((w, b))
        log(f'  {name}: pid {w.pid}')
    if why:
      skipped[name] = why
      log(f'  skip {name}: {why}')
  return out


def _rounds(workers, args, log) -> tuple[list, dict, dict]:
  """Interleaved rounds. Returns (round records, train_t, eval_t) with
  t[name] the seconds per step of each round."""
  t0 = time.monotonic()
  records = []
  times = {'train': collections.defaultdict(list),
           'eval': collections.defaultdict(list)}
  for phase in ('train', 'eval'):
    for r in range(args.reps):
      rec = {'phase': phase, 'round': r, 'loadavg': list(os.getloadavg()),
             'runs': []}
      for w, _ in workers:
        start = time.monotonic() - t0
        got = w.ask(phase, steps=args.steps)['times']
        rec['runs'].append({'key': w.key, 'pid': w.pid, 'start_s': start,
                            'end_s': time.monotonic() - t0,
                            'ms_per_step': {n: 1e3 * t
                                            for n, t in got.items()}})
        for name, t in got.items():
          times[phase][name].append(t)
      log(f"  {phase} round {r}: load {rec['loadavg'][0]:.2f}")
      records.append(rec)
  return records, dict(times['train']), dict(times['eval'])


def bench_model(model: str, args, log, peaks: list) -> dict:
  """Same result as run.bench_model, plus 'rounds', 'pids' and 'device'."""
  jw = Proc('jaxcnn')
  workers = [(jw, None)]
  try:
    peaks.append(jw.ask('peak', n=args.peak_n,
                        precision=args.precision)['flops'])
    jb = jw.ask('build', key='jaxcnn', model=model, args=vars(args))
    workers[0] = (jw, jb)
    log(f"  jaxcnn: pid {jw.pid}, {jb['device']['kind']}; matmul peak "
        f'{peaks[-1] / 1e9:.1f} GFLOP/s')
    skipped = jb['skipped']
    workers += _start_references(args, jb, skipped, log)
    for w, _ in workers:
      w.ask('warmup', steps=args.warmup)
    rounds, train_t, eval_t = _rounds(workers, args, log)
    peaks.append(jw.ask('peak', n=args.peak_n,
                        precision=args.precision)['flops'])
    info, pids = {}, {}
    for w, b in workers:
      info.update(w.close())
      pids.update({name: w.pid for name in b['names']})
  finally:
    for w, _ in workers:  # after an error: no worker outlives the parent
      if w.proc.poll() is None:
        w.proc.kill()
        w.proc.wait()
  rows = run.make_rows(train_t, eval_t, info, args.batch, jb['macs'])
  for name, row in rows.items():
    row['pid'] = pids[name]
  ratios, spread = run.make_ratios(rows, train_t, eval_t)
  out = run.model_result(model, jb['ema'], jb['input_shape'], jb['params'],
                         jb['macs'], rows, ratios, spread, skipped,
                         jb['data_source'])
  out.update(rounds=rounds, pids=pids, device=jb['device'],
             worker_env={w.key: b['env'] for w, b in workers})
  return out
