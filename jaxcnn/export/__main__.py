"""Export a trained or compressed workdir for deployment (docs/export.md):

  python -m jaxcnn.export --workdir W --format {stablehlo,tflite} \
      [--quantize {none,fp16,int8}] [--weights auto|params|ema] \
      [--batch N] [--calib_images 512] [--sparse] --output FILE

W is a plain training workdir (its latest checkpoint) or a compression
output workdir (its model.jxcz, mapped per method: jaxcnn/export/families.py).
Writes FILE and FILE.json (class names, input shape, provenance). Exit
status: 0 done, 2 a user error (one 'error: ...' line on stderr, nothing
written), 5 an unusable workdir.
"""
from __future__ import annotations

import argparse
import os
import sys

# As in jaxcnn/main.py: no TF oneDNN start-up lines; TF runs only the
# converter here.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from jaxcnn import compile_cache, hostmem  # noqa: E402
from jaxcnn.errors import JaxcnnError, one_line  # noqa: E402
from jaxcnn.export import FORMATS, QUANTIZE, convert  # noqa: E402


def parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m jaxcnn.export',
                              description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True,
                 help='a training or compression output workdir')
  # No argparse choices: check_request's one-line error names the
  # supported format/quantize pairs.
  p.add_argument('--format', required=True, help=' or '.join(FORMATS))
  p.add_argument('--quantize', default='none',
                 help=f'{", ".join(QUANTIZE)}; tflite only: fp16 weights, '
                 'or full-integer int8')
  p.add_argument('--weights', choices=('auto', 'params', 'ema'),
                 default='auto', help='auto: EMA weights if the run kept them')
  p.add_argument('--batch', type=int, default=None,
                 help='fixed batch size, 0 symbolic (default: 0 for '
                 'stablehlo, 1 for tflite, where a symbolic batch is slow)')
  p.add_argument('--calib_images', type=int,
                 default=convert.DEFAULT_CALIB_IMAGES,
                 help='int8: training images to calibrate on')
  p.add_argument('--sparse', action='store_true',
                 help='tflite fp32: sparse weight tensors (smaller file for '
                 'pruned nets, same speed: docs/export.md)')
  p.add_argument('--output', required=True, help='the file to write')
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse(argv)
  try:
    meta = convert.export(args.workdir, args.format, args.output,
                          quantize=args.quantize, weights=args.weights,
                          batch=args.batch, calib_images=args.calib_images,
                          sparse=args.sparse)
  except JaxcnnError as e:
    print(f'error: {one_line(e)}', file=sys.stderr)
    return e.exit_code
  batch = meta['batch'] or 'symbolic'
  comp = meta['compression']
  source = (f'{comp["method"]} artifact: {comp["mapping"]}' if comp else
            f'step {meta["step"]}')
  print(f'wrote {os.path.abspath(args.output)} ({meta["bytes"]} bytes, '
        f'{meta["gzip_bytes"]} gzipped; {args.format}/{args.quantize}, batch '
        f'{batch}, {source}, {meta["weights"]} weights) and its sidecar .json',
        flush=True)
  if comp and comp.get('note'):
    print(f'note: {comp["note"]}', flush=True)
  return 0


if __name__ == '__main__':
  hostmem.keep_freed_memory()  # before any thread allocates (hostmem.py)
  compile_cache.enable()  # reruns and resumes skip XLA compiles
  sys.exit(main())
