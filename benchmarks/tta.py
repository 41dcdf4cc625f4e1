"""Time to accuracy: jaxcnn's CLI against a TF2 reference of the same recipe.

  python -m benchmarks.tta --config cifar10_tutorial --epochs 10
  python -m benchmarks.tta --config alexnet_cifar --epochs 10 --target 0.70
  python -m benchmarks.tta --config alexnet_cifar --epochs 2 --rounds 2
  python -m benchmarks.tta --config quickstart --epochs 2 --steps 3  # smoke

Runs, one after the other, each in its own process:
  jaxcnn  python -m jaxcnn.main --config configs/<c>.py --workdir TMP
          --config.num_epochs=N --config.eval_every_steps=<steps per epoch>
  tf      python -m benchmarks.reference.tta_tf --config configs/<c>.py ...
          (benchmarks/reference/tta_tf.py: same data, batches, augmentation,
          model, optimizer, schedule, L2 and EMA)
and times, from the moment each command is started, every log line as it
streams in: the wall time to each epoch's raw and EMA test accuracy (both are
reported when the epoch's evaluation, raw then EMA, has finished; the values
come from each run's metrics.jsonl) and the first time each reaches
--target. The data are loaded once before either run, so neither pays for
decoding CIFAR-10's JPEGs into the cache. --steps K makes an "epoch" K steps
(evaluation every K steps, N*K steps in all; schedules keep the real epoch).
--rounds R repeats the pair, reversing the order in every other round: a
machine whose speed drifts during a run (a shared VM) then favours neither
framework, and the ratios reported are the geometric mean over rounds.
Writes benchmarks/results/tta_<config>.json and .md (or --out).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = ('jaxcnn', 'tf')
EVAL_LINE = re.compile(r'^step (\d+): precision @ 1 = ([0-9.]+)(?: \((\w+)\))?')
TRAIN_LINE = re.compile(r'^step (\d+), loss = \S+ \(([0-9.]+) examples/sec')


def _config_path(name: str) -> str:
  """'name[:arg]' or a path -> 'configs/name.py[:arg]'."""
  base, sep, arg = name.partition(':')
  if not base.endswith('.py'):
    base = os.path.join('configs', base + '.py')
  return base + sep + arg


def command(fw: str, args, config_spec: str, spe: int, workdir: str) -> list:
  py = [sys.executable, '-m']
  if fw == 'jaxcnn':
    cmd = py + ['jaxcnn.main', '--config', config_spec, '--workdir', workdir,
                f'--config.num_epochs={args.epochs:g}',
                f'--config.eval_every_steps={spe}']
    if args.steps:
      cmd.append(f'--config.num_train_steps={int(args.epochs * spe)}')
    if args.data_dir:
      cmd.append(f'--config.data_dir={args.data_dir}')
    return cmd + shlex.split(args.jax_args)
  cmd = py + ['benchmarks.reference.tta_tf', '--config', config_spec,
              '--workdir', workdir, f'--epochs={args.epochs:g}',
              f'--steps={args.steps}']
  if args.data_dir:
    cmd.append(f'--data_dir={args.data_dir}')
  return cmd + shlex.split(args.tf_args)


def stream(cmd: list, tag: str, env: dict) -> dict:
  """Runs cmd; every output line with its time since the start."""
  t0 = time.monotonic()
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1)
  lines = []
  for line in proc.stdout:
    t = time.monotonic() - t0
    line = line.rstrip('\n')
    lines.append((t, line))
    print(f'[{tag} {t:7.1f}s] {line}', flush=True)
  rc = proc.wait()
  return {'pid': proc.pid, 'returncode': rc,
          'wall_s': time.monotonic() - t0, 'lines': lines}


def _read_jsonl(path: str) -> list:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


def parse(run: dict, workdir: str, spe: int, target: float) -> dict:
  """Epoch table, time to target and training throughput of one run."""
  seen, train_ips = {}, []
  for t, line in run['lines']:
    m = EVAL_LINE.match(line)
    if m:
      seen.setdefault((int(m[1]), m[3] or 'params'), (t, float(m[2])))
    m = TRAIN_LINE.match(line)
    if m:
      train_ips.append((t, float(m[2])))
  exact = {(r['step'], r['split'][5:]): r['precision@1']
           for r in _read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
           if r['split'].startswith('eval_')}
  epochs = {}
  for (step, split), (t, acc) in sorted(seen.items()):
    e = epochs.setdefault(step, {'epoch': step / spe, 'step': step})
    key = 'raw' if split == 'params' else split
    e[key], e[f'{key}_time_s'] = exact.get((step, split), acc), t
  epochs = [epochs[s] for s in sorted(epochs)]
  to_target = {}
  for key in ('raw', 'ema'):
    if not any(key in e for e in epochs):
      continue  # a config without EMA
    hit = [e for e in epochs if e.get(key, -1) >= target]
    to_target[key] = ({'time_s': hit[0][f'{key}_time_s'],
                       'epoch': hit[0]['epoch']} if hit else None)
  # The first log interval includes compilation: left out of the median.
  ips = sorted(x for _, x in train_ips[1:]) or [x for _, x in train_ips]
  return {'epochs': epochs, 'time_to_target': to_target,
          'train_examples_per_sec_median': ips[len(ips) // 2] if ips else None,
          'first_train_log_s': train_ips[0][0] if train_ips else None}


def _ratios(runs: dict) -> dict:
  """TF's time / jaxcnn's (> 1: jaxcnn is faster), at the last epoch both
  reached and at the target."""
  if not all(k in runs and runs[k]['epochs'] for k in FRAMEWORKS):
    return {}
  j, t = runs['jaxcnn'], runs['tf']
  out = {}
  for key in ('raw', 'ema'):
    last = min(len(j['epochs']), len(t['epochs'])) - 1
    tj, tt = (r['epochs'][last].get(f'{key}_time_s') for r in (j, t))
    if tj and tt:
      out[f'last_epoch_{key}'] = tt / tj
    hj, ht = j['time_to_target'].get(key), t['time_to_target'].get(key)
    if hj and ht:
      out[f'target_{key}'] = ht['time_s'] / hj['time_s']
  return out


def _prepare_data(config, data_dir: str) -> int:
  """Loads the data once untimed (decoding the CIFAR-10 JPEGs fills the
  cache both runs then read); returns the train-set size."""
  from jaxcnn.data import sources
  splits = sources.load(config.dataset.name,
                        data_dir=data_dir or config.data_dir,
                        cache_dir=config.cache_dir, allow_download=False)
  print(f'data: {splits.source}', flush=True)
  return len(splits.x_train)


def _parser():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', required=True,
                 help='configs/ name (cifar10_tutorial, alexnet_cifar, '
                 'quickstart[:arg]) or a config file path')
  p.add_argument('--epochs', type=float, default=10)
  p.add_argument('--steps', type=int, default=0,
                 help='steps per epoch (0: train size // batch); for smoke '
                 'runs')
  p.add_argument('--target', type=float, default=0.70,
                 help='test precision@1 whose first time is reported')
  p.add_argument('--frameworks', default=','.join(FRAMEWORKS))
  p.add_argument('--data_dir', default='', help="default: the config's, "
                 'else $JAXCNN_DATA_DIR')
  p.add_argument('--jax_args', default='',
                 help='extra jaxcnn.main flags, e.g. '
                 '"--config.end_plots=False"')
  p.add_argument('--tf_args', default='', help='extra tta_tf flags, e.g. '
                 '"--jit_compile=1"')
  p.add_argument('--rounds', type=int, default=1,
                 help='repeat the runs; odd rounds reverse the framework '
                 'order (ratios: geometric mean over rounds)')
  p.add_argument('--keep_workdirs', action='store_true')
  p.add_argument('--warm_compile_cache', action='store_true',
                 help="jaxcnn uses the user's persistent XLA cache (default: "
                 'a fresh empty one per run, so every compile counts, as '
                 "for TF, which keeps none)")
  p.add_argument('--out', default='', help='output prefix for .json/.md')
  return p


def main(argv=None) -> dict:
  p = _parser()
  args = p.parse_args(argv)
  frameworks = args.frameworks.split(',')
  for fw in frameworks:
    if fw not in FRAMEWORKS:
      p.error(f'unknown --frameworks {fw!r}; valid: {",".join(FRAMEWORKS)}')
  if args.rounds < 1:
    p.error('--rounds must be >= 1')
  from benchmarks.reference import tta_tf
  spec = _config_path(args.config)
  config = tta_tf.load_config(os.path.join(ROOT, spec))
  n_train = _prepare_data(config, args.data_dir)
  spe = args.steps or n_train // config.batch_size
  tmp = tempfile.mkdtemp(prefix='jaxcnn_tta_')
  rounds = []
  try:
    for r in range(args.rounds):
      # Odd rounds reverse the order, so drift of the machine during a round
      # favours each framework equally often.
      order = frameworks if r % 2 == 0 else frameworks[::-1]
      runs = {fw: _run_one(args, fw, spec, spe, os.path.join(tmp, f'{r}_{fw}'))
              for fw in order}
      rounds.append({'round': r, 'order': order, 'runs': runs,
                     'ratios_tf_over_jaxcnn': _ratios(runs)})
  finally:
    if not args.keep_workdirs:
      shutil.rmtree(tmp, ignore_errors=True)
  report = _report(args, spec, config, spe, n_train, rounds)
  _write(args, report)
  return report


def _run_one(args, fw: str, spec: str, spe: int, workdir: str) -> dict:
  """One framework's command in its own process, timed and parsed."""
  cmd = command(fw, args, spec, spe, workdir)
  env = dict(os.environ, PYTHONUNBUFFERED='1')
  if fw == 'tf':  # TF's own default (oneDNN on), whatever ours says
    env.pop('TF_ENABLE_ONEDNN_OPTS', None)
  elif not args.warm_compile_cache:  # cold start: compiles are timed
    env['JAX_COMPILATION_CACHE_DIR'] = workdir + '_xla_cache'
  load = list(os.getloadavg())
  print(f'== {fw}: load {load[0]:.2f}; {shlex.join(cmd)}', flush=True)
  run = stream(cmd, fw, env)
  res = parse(run, workdir, spe, args.target)
  res.update(command=shlex.join(cmd), pid=run['pid'],
             returncode=run['returncode'], wall_s=run['wall_s'],
             loadavg_before=load, loadavg_after=list(os.getloadavg()))
  if run['returncode']:
    print(f'warning: {fw} exited with code {run["returncode"]}', flush=True)
  return res


def _mean_ratios(rounds: list) -> dict:
  """Geometric mean over rounds of each ratio every round has."""
  keys = set.intersection(*(set(r['ratios_tf_over_jaxcnn']) for r in rounds))
  return {k: float(np.exp(np.mean([np.log(r['ratios_tf_over_jaxcnn'][k])
                                   for r in rounds]))) for k in sorted(keys)}


def _report(args, spec, config, spe, n_train, rounds) -> dict:
  from benchmarks.run import _versions
  return {
      'config': spec, 'model': config.model.name,
      'dataset': config.dataset.name, 'train_examples': n_train,
      'batch_size': config.batch_size, 'epochs': args.epochs,
      'steps_per_epoch': spe, 'target': args.target,
      'parent_pid': os.getpid(),
      'host': machine.describe(),
      'versions': _versions(), 'python': sys.version.split()[0],
      'time_utc': time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime()),
      'args': vars(args), 'runs': rounds[0]['runs'], 'rounds': rounds,
      'ratios_tf_over_jaxcnn': _mean_ratios(rounds)}


def _fmt(x, spec='.1f'):
  return '-' if x is None else format(x, spec)


def to_markdown(r: dict) -> str:
  rounds = r.get('rounds') or [{'round': 0, 'order': list(r['runs']),
                                'runs': r['runs'],
                                'ratios_tf_over_jaxcnn':
                                    r['ratios_tf_over_jaxcnn']}]
  lines = [
      f"Time to accuracy, `{r['config']}` ({r['model']} on {r['dataset']}, "
      f"batch {r['batch_size']}, {r['steps_per_epoch']} steps per epoch), "
      f"{r['host']}, {r['time_utc']} UTC. Each framework in its own process, "
      'one after the other; seconds from the command\'s start to the line '
      "reporting the epoch's raw and EMA test precision@1.",
      'Versions: ' + ', '.join(f'{k} {v}' for k, v in
                               r['versions'].items()) + '.', '']
  for rec in rounds:
    if len(rounds) > 1:
      lines += [f"### Round {rec['round'] + 1} ({', '.join(rec['order'])})",
                '']
    lines += _round_lines(rec['runs'], r['target'])
    if rec['ratios_tf_over_jaxcnn']:
      lines += ['', 'TF time / jaxcnn time (> 1: jaxcnn faster): ' +
                _ratio_text(rec['ratios_tf_over_jaxcnn']), '']
  if len(rounds) > 1 and r['ratios_tf_over_jaxcnn']:
    lines += [f'Geometric mean over the {len(rounds)} rounds: ' +
              _ratio_text(r['ratios_tf_over_jaxcnn'])]
  return '\n'.join(lines).rstrip('\n') + '\n'


def _ratio_text(ratios: dict) -> str:
  return ', '.join(f'{k} {v:.2f}x' for k, v in ratios.items())


def _round_lines(runs: dict, target: float) -> list:
  """Commands, the epoch table and the times to target of one round."""
  fws, lines = list(runs), []
  for fw, run in runs.items():
    lines.append(f"- {fw} (pid {run['pid']}, exit {run['returncode']}, "
                 f"{run['wall_s']:.1f} s in all, load "
                 f"{run['loadavg_before'][0]:.2f} before, train "
                 f"{_fmt(run['train_examples_per_sec_median'], '.0f')} img/s "
                 f"median): `{run['command']}`")
  head = '| epoch | ' + ' | '.join(f'{fw} s | {fw} raw | {fw} EMA'
                                   for fw in fws) + ' |'
  lines += ['', head, '|---|' + '---|---|---|' * len(fws)]
  n = max((len(run['epochs']) for run in runs.values()), default=0)
  for i in range(n):
    cells = []
    for fw in fws:
      ep = runs[fw]['epochs']
      e = ep[i] if i < len(ep) else {}
      t = e.get('ema_time_s', e.get('raw_time_s'))
      cells += [_fmt(t), _fmt(e.get('raw'), '.4f'), _fmt(e.get('ema'), '.4f')]
    epoch = next(run['epochs'][i]['epoch'] for run in runs.values()
                 if i < len(run['epochs']))
    lines.append(f'| {epoch:g} | ' + ' | '.join(cells) + ' |')
  lines += ['', f'Time to {target:.2f} (s, epoch):']
  for fw, run in runs.items():
    tt = run['time_to_target']
    lines.append(f'- {fw}: ' + ', '.join(
        f"{k} {_fmt(v and v['time_s'])}" + (f" (epoch {v['epoch']:g})" if v
                                             else ' (not reached)')
        for k, v in tt.items()))
  return lines


def _write(args, report) -> None:
  name = report['config'].replace('configs/', '').replace('.py', '')
  out = args.out or os.path.join(ROOT, 'benchmarks', 'results',
                                 'tta_' + name.replace(':', '_'))
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + '.json', 'w') as f:
    json.dump(report, f, indent=2)
  with open(out + '.md', 'w') as f:
    f.write(to_markdown(report))
  print(to_markdown(report))
  print(f'wrote {out}.json and {out}.md', flush=True)


if __name__ == '__main__':
  main()
