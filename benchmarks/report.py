"""Markdown tables for a benchmarks.run report (also used for the README),
and the JSON writer the other benchmark scripts share."""
from __future__ import annotations

import json
import os

def _mb(x):
  return 'n/a' if x is None else f'{x / 2**20:.0f}'


_MODES = {
    'isolated': 'Mode: isolated: each framework in its own process with its '
                'default threading, rounds interleaved across the processes.',
    'in_process': '**Mode: IN-PROCESS**: every framework inside one Python '
                  'process (--in_process). TF and torch run several times '
                  'slower there than in a process of their own: do not quote '
                  'these ratios.'}


def _ratio(k, x, spread):
  s = spread.get(k, {})
  rng = lambda p: (f" [{s[p][0]:.2f}..{s[p][1]:.2f}]" if p in s else '')
  return (f"{k} {x['train']:.2f}x{rng('train')} "
          f"({x['eval']:.2f}x{rng('eval')})")


def _rounds(report: dict) -> list[str]:
  """Load average before each round (isolated mode)."""
  lines = []
  for r in report['results']:
    rounds = r.get('rounds')
    if rounds:
      lines.append(f"- {r['model']}: " + ', '.join(
          f"{x['phase']} {x['round']}: {x['loadavg'][0]:.2f}" for x in rounds))
  return ['', 'Load average (1 min) before each round:'] + lines if lines \
      else []


def to_markdown(report: dict) -> str:
  v = report['versions']
  dev = report['device']
  a = report['args']
  mode = _MODES[report.get('mode', 'in_process')]
  if a.get('threads'):
    mode = mode.replace('its default threading', f"{a['threads']} thread(s)")
    mode += f" --threads {a['threads']}: every framework capped."
  lines = [
      mode,
      f"{dev['kind']} ({dev['platform']}), {report['host']}, "
      f"{report['time_utc']} UTC; load average "
      f"{report['loadavg_start'][0]:.1f} at start, "
      f"{report['loadavg_end'][0]:.1f} at end.",
      'Versions: ' + ', '.join(f'{k} {x}' for k, x in v.items()) + '.',
      f"Batch {a['batch']}, {a['reps']} interleaved repetitions of "
      f"{a['steps']} steps (per framework and round) after "
      f"{a['warmup']} warm-up steps; precision "
      f"{a['precision'] or 'per config (float32)'}. Matmul peak "
      f"({a.get('peak_n', 2048)}^2): "
      f"{report['matmul_peak_flops'] / 1e9:.0f} GFLOP/s.", '',
      '| model | runner | train img/s (min..max) | ms/step | eval img/s | '
      'compile s | XLA MB | device peak MB | train FLOP/s % of peak |',
      '|---|---|---|---|---|---|---|---|---|']
  for r in report['results']:
    for name, row in r['rows'].items():
      t = row['train']
      ev = row.get('eval')
      lines.append(
          f"| {r['model']} | {name} | {t['images_per_sec']:.0f} "
          f"({t['min']:.0f}..{t['max']:.0f}) | {t['ms_per_step']:.1f} | "
          + (f"{ev['images_per_sec']:.0f}" if ev else '-') + ' | '
          + (f"{row['compile_s']:.1f}" if 'compile_s' in row else '-') + ' | '
          + (_mb(row.get('memory_bytes')) if ev else '-') + ' | '
          + (_mb(row.get('peak_device_bytes')) if ev else '-') + ' | '
          + f"{100 * row['flop_fraction']:.1f} |")
  lines += ['', '| model | params | MACs/image | '
            'jaxcnn / reference, train (eval) [per-round min..max] | '
            'real data / synthetic | '
            'device data / synthetic |', '|---|---|---|---|---|---|']
  for r in report['results']:
    rat = r['ratios']
    refs = ', '.join(_ratio(k, x, r.get('ratio_spread', {}))
                     for k, x in rat.items() if isinstance(x, dict))
    real = rat.get('real_vs_synthetic')
    dev = rat.get('device_data_vs_synthetic')
    lines.append(f"| {r['model']} | {r['params']:,} | "
                 f"{r['macs_per_image']:,} | {refs or '-'} | "
                 + (f'{real:.3f}' if real else '-') + ' | '
                 + (f'{dev:.3f}' if dev else '-') + ' |')
  skipped = [(r['model'], k, why) for r in report['results']
             for k, why in r['skipped'].items()]
  if skipped:
    lines += ['', 'Skipped:'] + [f'- {m} / {k}: {why}' for m, k, why in
                                 skipped]
  lines += _rounds(report)
  return '\n'.join(lines) + '\n'


def write_json(path: str, result: dict) -> None:
  """Writes a benchmark's result (directories made) and prints its summary."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result, f, indent=1)
  print(json.dumps(result['summary'], indent=1))
