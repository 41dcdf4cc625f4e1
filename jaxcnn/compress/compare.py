"""Several compression runs side by side, from their compression_report.json:

  python -m jaxcnn.compress.compare WORKDIR... [--output table.md]

One row per run: method, model, accuracy (dense -> compressed, as measured
on the loaded artifact), parameters stored, bytes on disk (dense file ->
compressed file), compression ratio, MACs per image and measured latency
per image (on the CPU unless the report names another device). Markdown goes to stdout and, with --output, to a file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

COLUMNS = ('run', 'method', 'model', 'accuracy dense → compressed',
           'params stored', 'bytes on disk', 'ratio', 'MACs/image',
           'ms/image')


def load(workdir: str) -> dict:
  path = os.path.join(workdir, 'compression_report.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{workdir}: no compression_report.json (not a '
                            'finished compression run)')
  with open(path) as f:
    return json.load(f)


def row(workdir: str, rep: dict) -> list[str]:
  t, a, lat = rep['total'], rep['accuracy'], rep['latency']
  model = rep['model']
  if rep.get('teacher'):  # distillation: the dense net is the teacher
    model = f"{rep['teacher']} → {model}"
  return [os.path.basename(os.path.normpath(workdir)), rep['method'], model,
          f"{a['dense']:.4f} → {a['compressed_after_finetune']:.4f}",
          f"{t['params_after']:,}",
          f"{t['bytes_dense']:,} → {t['bytes_compressed']:,}",
          f"{t['compression_ratio']:.2f}x",
          f"{t['macs_before']:,} → {t['macs_after']:,}",
          f"{lat['dense_ms_per_image']:.3f} → "
          f"{lat['compressed_ms_per_image']:.3f}"
          f"{' (' + lat['device'] + ')' if lat.get('device', 'cpu') != 'cpu' else ''}"]


def table(workdirs: list[str]) -> str:
  lines = ['| ' + ' | '.join(COLUMNS) + ' |',
           '|---|---|---|' + '---:|' * (len(COLUMNS) - 3)]
  for d in workdirs:
    lines.append('| ' + ' | '.join(row(d, load(d))) + ' |')
  lines += ['', 'Accuracy is that of the loaded artifact on the full test '
            'set; latency is batch 200 on the device the run used (CPU '
            'unless marked), dense and compressed timed interleaved within '
            'each run (compare ratios, not absolute times, across runs).',
            '']
  return '\n'.join(lines)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog='python -m jaxcnn.compress.compare',
                               description=__doc__.split('\n\n')[0])
  ap.add_argument('workdirs', nargs='+', help='finished compression runs')
  ap.add_argument('--output', default='', help='also write the table here')
  args = ap.parse_args(argv)
  try:
    md = table(args.workdirs)
  except (FileNotFoundError, KeyError, json.JSONDecodeError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(md)
  if args.output:
    with open(args.output, 'w') as f:
      f.write(md)
  return 0


if __name__ == '__main__':
  sys.exit(main())
