"""Host decode throughput of the streaming input (a script, not a test).

Measures, on this machine:
  1. decode + resize per process (one core): ImageNet-sized JPEGs generated
     here (500x375, quality 90, smooth content plus noise so the files are
     photo-sized, ~100 KB) -> 256x256 center crop, as configs/alexnet_imagenet
     reads them (ILSVRC-2012 train: ~140 GB / 1.28M files = ~110 KB each);
     and the shared CIFAR-10 JPEG files (32x32, quality 75) at 32;
  2. the grain stream end to end (data/streaming.TrainStream over an image
     folder of those files) with 0, 1 and 2 worker processes;
  3. how many decode workers would feed each train step rate: the rates are
     inputs (STEP_RATES below, with their sources), not measured here.
Every number is written with the load average (1-min) before and after it:
the machine is shared, and a busy machine reads slower.

  python -m benchmarks.decode_bench                    # ~1-2 min on 2 cores
  python -m benchmarks.decode_bench --images 400 --rounds 5
Writes benchmarks/results/decode.json.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import tempfile
import time

import numpy as np
from PIL import Image

from jaxcnn.data import decode, imagefolder, streaming

RESULTS = os.path.join(os.path.dirname(__file__), 'results', 'decode.json')
SHARED = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data',
                      'cifar10_jpeg_bytes.npz')
# Train-step rates (images/s) to size the workers for; sources in --help.
STEP_RATES = {
    'cifar10_tutorial (2-core CPU, brief)': 1200.0,
    'alexnet_cifar (2-core CPU, brief)': 160.0,
    'alexnet_imagenet 227 (1x H100, docs/scaling.md)': 13212.0,
}


def load() -> float:
  return round(os.getloadavg()[0], 2)


def imagenet_like(n: int, seed: int = 0) -> list[bytes]:
  """500x375 JPEGs at quality 90: smooth random scenes plus sensor-like
  noise, so size and decode cost are a photo's, not a flat image's."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    small = rng.integers(0, 256, (12, 16, 3), np.uint8)
    im = np.asarray(Image.fromarray(small).resize((500, 375),
                                                  Image.Resampling.BICUBIC))
    im = np.clip(im + rng.normal(0, 20, im.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, 'JPEG', quality=90)
    out.append(buf.getvalue())
  return out


def cifar_jpegs(n: int) -> list[bytes]:
  path = os.environ.get('JAXCNN_DATA_DIR')
  path = os.path.join(path, 'cifar10_jpeg_bytes.npz') if path else SHARED
  with np.load(path) as d:
    blob, offs = d['train_jpeg'], d['train_offsets']
  return [blob[offs[i]:offs[i + 1]].tobytes() for i in range(n)]


def per_process(name: str, raws: list[bytes], size: int, rounds: int) -> dict:
  """Images/s of decode.decode in this one process: the best of `rounds`
  passes (the least disturbed by other jobs), with every pass recorded."""
  passes = []
  for _ in range(rounds):
    before = load()
    t = time.perf_counter()
    for raw in raws:
      decode.decode(raw, size)
    dt = time.perf_counter() - t
    passes.append({'img_per_s': round(len(raws) / dt, 1),
                   'load_before': before, 'load_after': load()})
  best = max(passes, key=lambda p: p['img_per_s'])
  return {'name': name, 'images': len(raws), 'output': f'{size}x{size}',
          'mean_file_kb': round(np.mean([len(r) for r in raws]) / 1024, 1),
          'img_per_s_per_process': best['img_per_s'],
          'load_at_best': [best['load_before'], best['load_after']],
          'passes': passes}


def write_folder(root: str, raws: list[bytes], classes: int = 4) -> str:
  for split in ('train', 'val'):
    for c in range(classes):
      os.makedirs(os.path.join(root, split, f'c{c}'), exist_ok=True)
  for i, raw in enumerate(raws):
    with open(os.path.join(root, 'train', f'c{i % classes}', f'{i:06d}.jpg'),
              'wb') as f:
      f.write(raw)
  for c in range(classes):  # val needs the same classes
    with open(os.path.join(root, 'val', f'c{c}', 'v.jpg'), 'wb') as f:
      f.write(raws[c])
  return root


def stream(name: str, root: str, size: int, batch: int, workers: int,
           steps: int) -> dict:
  """Images/s of TrainStream after a warm-up of 2 batches per worker
  (worker start-up, paid once per run, is reported as warmup_s)."""
  train, _ = imagefolder.scan(root, log=lambda m: None)
  src = imagefolder.ImageFolderSource(train, size)
  s = streaming.TrainStream(src, batch, 0, workers=workers)
  before = load()
  t0 = time.perf_counter()
  for _ in range(2 * max(1, workers)):
    next(s)
  t1 = time.perf_counter()
  for _ in range(steps):
    next(s)
  dt = time.perf_counter() - t1
  s.close()
  return {'name': name, 'workers': workers, 'batch': batch,
          'output': f'{size}x{size}', 'steps_timed': steps,
          'warmup_s': round(t1 - t0, 2),
          'img_per_s': round(steps * batch / dt, 1),
          'load_before': before, 'load_after': load()}


def workers_needed(per_process_rate: dict[str, float]) -> list[dict]:
  out = []
  for step, rate in STEP_RATES.items():
    for data, per in per_process_rate.items():
      out.append({'step': step, 'step_img_per_s': rate, 'data': data,
                  'decode_img_per_s_per_process': per,
                  'workers': math.ceil(rate / per)})
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--images', type=int, default=256)
  p.add_argument('--stream_images', type=int, default=1024)
  p.add_argument('--cifar_images', type=int, default=5000)
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--out', default=RESULTS)
  a = p.parse_args(argv)
  t = time.time()
  big = imagenet_like(a.images)
  small = cifar_jpegs(a.cifar_images)
  rows = [per_process('imagenet-size 500x375 q90 -> 256 center crop', big,
                      256, a.rounds),
          per_process('cifar10 shared JPEGs 32x32 q75 -> 32', small, 32,
                      a.rounds)]
  for r in rows:
    print(f"{r['name']}: {r['img_per_s_per_process']} img/s per process "
          f"(load {r['load_at_best']})", flush=True)
  streams = []
  with tempfile.TemporaryDirectory() as tmp:
    files = (big * math.ceil(a.stream_images / len(big)))[:a.stream_images]
    root = write_folder(os.path.join(tmp, 'big'), files)
    for w in (0, 1, 2):
      streams.append(stream('imagenet-size folder -> 256', root, 256, 32, w,
                            a.stream_images // 32 - 6))
      print(streams[-1], flush=True)
  rates = {r['name']: r['img_per_s_per_process'] for r in rows}
  result = {
      'command': 'python -m benchmarks.decode_bench ' + ' '.join(argv or []),
      'machine': {'cpu_count': os.cpu_count(), 'python': platform.python_version(),
                  'pillow': Image.__version__, 'processor': platform.processor()},
      'note': ('load = 1-min load average before/after; the machine is shared. '
               'Step rates are inputs (see STEP_RATES), not measured here.'),
      'per_process': rows, 'stream': streams,
      'workers_needed': workers_needed(rates),
      'wall_s': round(time.time() - t, 1)}
  os.makedirs(os.path.dirname(a.out), exist_ok=True)
  with open(a.out, 'w') as f:
    json.dump(result, f, indent=1)
  for w in result['workers_needed']:
    print(f"{w['step']} at {w['step_img_per_s']} img/s <- {w['data']}: "
          f"{w['workers']} worker(s)")
  print(f'wrote {a.out}')


if __name__ == '__main__':
  main()
