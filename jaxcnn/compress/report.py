"""compression_report.json, a markdown table and an accuracy-vs-ratio PNG.

Per layer (leaves grouped by their module path) and in total:
params before/after, nonzeros, bits per weight (stored bytes * 8 / dense
params), bytes in the dense and the compressed artifact, MACs, and the
accuracy of the dense net, of the compressed net before fine-tuning and of
the loaded artifact after it. Byte totals are the two files' sizes on disk.

  python -m jaxcnn.compress.report OUT.png REPORT_DIR...   # one plot of many
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from jaxcnn.compress import storage

# Methods whose artifacts store only the nonzero weights.
SPARSE = ('prune', 'deep_compression')


def _layer(name: str) -> str:
  """'params/conv1/kernel' -> 'conv1'; BN statistics count with their layer."""
  parts = name.split('/')
  return '/'.join(parts[1:-1]) or parts[-1]


def build(meta, dense_vars, comp_vars, dense_bytes, comp_bytes, dense_macs,
          comp_macs, acc, latency, extra) -> dict:
  dflat = storage.flatten(dense_vars)
  cflat = storage.flatten(comp_vars)
  layers: dict = {}

  def row(name):
    return layers.setdefault(name, dict(
        params_before=0, params_after=0, nonzeros=0, bytes_dense=0,
        bytes_compressed=0, macs_before=0, macs_after=0))
  for name, v in dflat.items():
    if name.startswith('params/'):
      row(_layer(name))['params_before'] += int(v.size)
    row(_layer(name))['bytes_dense'] += dense_bytes.get(name, 0)
  for name, v in cflat.items():
    if name.startswith('compress/'):
      continue
    r = row(_layer(name))
    if name.startswith('params/'):
      nz = int(np.count_nonzero(v))
      r['nonzeros'] += nz
      # Stored weights: a sparse leaf keeps only its nonzeros.
      r['params_after'] += nz if meta.get('method') in SPARSE else int(v.size)
    r['bytes_compressed'] += comp_bytes.get(name, 0)
  for name, m in dense_macs.items():
    row(name)['macs_before'] = m
  for name, m in comp_macs.items():
    row(name)['macs_after'] = m
  for name, r in layers.items():
    if meta.get('method') in SPARSE and r['params_before']:
      # Unstructured sparsity: only nonzero weights need multiply-adds.
      r['macs_after'] = int(round(r['macs_before'] * r['nonzeros'] /
                                  r['params_before']))
    r['bits_per_weight'] = (8.0 * r['bytes_compressed'] / r['params_before']
                            if r['params_before'] else 0.0)
  total = {k: sum(r[k] for r in layers.values()) for k in (
      'params_before', 'params_after', 'nonzeros', 'macs_before',
      'macs_after')}
  total['bytes_dense'] = dense_bytes['file']
  total['bytes_compressed'] = comp_bytes['file']
  total['bits_per_weight'] = 8.0 * comp_bytes['file'] / total['params_before']
  total['compression_ratio'] = dense_bytes['file'] / comp_bytes['file']
  total['nonzero_ratio'] = total['params_before'] / max(total['nonzeros'], 1)
  total['sparsity'] = 1.0 - total['nonzeros'] / total['params_before']
  return {**meta, 'layers': layers, 'total': total, 'accuracy': acc,
          'latency': latency, **extra}


def markdown(rep: dict) -> str:
  cols = ('params_before', 'params_after', 'nonzeros', 'bits_per_weight',
          'bytes_dense', 'bytes_compressed', 'macs_before', 'macs_after')
  lines = [f"### {rep['model']} · {rep['method']}", '',
           '| layer | ' + ' | '.join(cols) + ' |',
           '|---|' + '---:|' * len(cols)]
  fmt = lambda v: f'{v:.2f}' if isinstance(v, float) else f'{v:,}'
  for name, r in list(rep['layers'].items()) + [('**total (files)**',
                                                  rep['total'])]:
    lines.append(f'| {name} | ' + ' | '.join(fmt(r[c]) for c in cols) + ' |')
  a, t, lat = rep['accuracy'], rep['total'], rep['latency']
  lines += ['', f"accuracy: dense {a['dense']:.4f}, compressed before "
            f"fine-tuning {a['compressed_before_finetune']:.4f}, after "
            f"{a['compressed_after_finetune']:.4f} "
            f"({rep['fine_tune_steps']} steps)",
            f"file: {t['bytes_dense']:,} -> {t['bytes_compressed']:,} bytes "
            f"({t['compression_ratio']:.2f}x); nonzero weights "
            f"{t['params_before']:,} -> {t['nonzeros']:,} "
            f"({t['nonzero_ratio']:.2f}x); MACs {t['macs_before']:,} -> "
            f"{t['macs_after']:,}",
            f"{lat.get('device', 'cpu').upper()} latency per image "
            f"(batch 200): dense "
            f"{lat['dense_ms_per_image']:.4f} ms, compressed "
            f"{lat['compressed_ms_per_image']:.4f} ms",
            f"artifact round trip identical logits: "
            f"{rep['roundtrip_identical_logits']}", '']
  return '\n'.join(lines)


def plot(reports: list[dict], path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  for rep in reports:
    r = rep['total']['compression_ratio']
    a = rep['accuracy']
    label = (f"{rep['model']} {rep['method']}, "
             f"{rep['total']['nonzero_ratio']:.1f}x nz, {rep['fine_tune_steps']} st")
    line = ax.plot([1.0, r, r], [a['dense'], a['compressed_before_finetune'],
                                 a['compressed_after_finetune']], ':',
                   alpha=0.4)[0]
    ax.scatter([r], [a['compressed_after_finetune']], color=line.get_color(),
               label=label, zorder=3)
    ax.scatter([r], [a['compressed_before_finetune']], marker='x',
               color=line.get_color())
  ax.set_xscale('log')
  ax.set_xlabel('compression ratio (dense file / compressed file)')
  ax.set_ylabel('test accuracy')
  ax.set_title('accuracy vs compression (x: before fine-tuning)')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write(workdir: str, rep: dict) -> None:
  with open(os.path.join(workdir, 'compression_report.json'), 'w') as f:
    json.dump(rep, f, indent=2)
  with open(os.path.join(workdir, 'compression_report.md'), 'w') as f:
    f.write(markdown(rep))
  plot([rep], os.path.join(workdir, 'accuracy_vs_compression.png'))


def main(argv):
  if len(argv) < 3:
    print('usage: python -m jaxcnn.compress.report OUT.png REPORT_DIR...',
          file=sys.stderr)
    return 2
  reports = [json.load(open(os.path.join(d, 'compression_report.json')))
             for d in argv[2:]]
  plot(reports, argv[1])
  for rep in reports:
    print(markdown(rep))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
