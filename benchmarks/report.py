"""Markdown tables for a benchmarks.run report (also used for the README)."""
from __future__ import annotations


def _mb(x):
  return 'n/a' if x is None else f'{x / 2**20:.0f}'


def to_markdown(report: dict) -> str:
  v = report['versions']
  dev = report['device']
  a = report['args']
  lines = [
      f"{dev['kind']} ({dev['platform']}), {report['host']}, "
      f"{report['time_utc']} UTC; load average "
      f"{report['loadavg_start'][0]:.1f} at start, "
      f"{report['loadavg_end'][0]:.1f} at end.",
      'Versions: ' + ', '.join(f'{k} {x}' for k, x in v.items()) + '.',
      f"Batch {a['batch']}, {a['reps']} interleaved repetitions of "
      f"{a['steps']} steps after {a['warmup']} warm-up steps; precision "
      f"{a['precision'] or 'per config (float32)'}. Matmul peak ({a.get('peak_n', 2048)}^2): "
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
            'jaxcnn / reference, train (eval) | real data / synthetic | '
            'device data / synthetic |', '|---|---|---|---|---|---|']
  for r in report['results']:
    rat = r['ratios']
    refs = ', '.join(f"{k} {x['train']:.2f}x ({x['eval']:.2f}x)"
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
  return '\n'.join(lines) + '\n'
