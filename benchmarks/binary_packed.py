"""Bit-packed XNOR/popcount layers against fp32 on the CPU: memory and time.

  python -m benchmarks.binary_packed [--rounds 15] [--out PATH]

Cases: a Dense layer, a 3x3 conv and a whole BNN LeNet-5 (models/binary.py,
the C3/C5/F6 widths of configs/bnn_mnist.py's paper-size variant). Each case
checks first that the packed result equals the fp32 +-1 simulation exactly,
then times both jitted, interleaved round by round (median), so load from
other processes on a shared CPU slows both alike. Memory is the bytes of the
binary layers' weights: fp32 kernel vs uint32 sign words (+ fp32 alpha per
filter where used). Writes <out>.json (default
benchmarks/results/binary_packed_cpu.json) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import models
from jaxcnn.compress import bitpack
from jaxcnn.models import binary as bm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pm1(key, shape):
  return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0)


def _time(fns: dict, args: dict, rounds: int) -> dict:
  for k, f in fns.items():
    jax.block_until_ready(f(*args[k]))
  times = {k: [] for k in fns}
  for _ in range(rounds):
    for k, f in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(f(*args[k]))
      times[k].append(time.perf_counter() - t)
  return {k: 1000.0 * float(np.median(v)) for k, v in times.items()}


def dense_case(batch, n_in, n_out, rounds):
  kx, kw = jax.random.split(jax.random.key(0))
  x, w = _pm1(kx, (batch, n_in)), jax.random.normal(kw, (n_in, n_out))
  wb = bm.binarize(w)
  words, n = bitpack.pack_kernel(w)
  f32 = jax.jit(lambda x, w: x @ w)
  packed = jax.jit(lambda x, words: bitpack.packed_dense(x, words, n))
  exact = bool(np.array_equal(np.asarray(f32(x, wb)),
                              np.asarray(packed(x, words))))
  ms = _time({'fp32': f32, 'packed': packed},
             {'fp32': (x, wb), 'packed': (x, words)}, rounds)
  return {'case': f'dense {n_in}->{n_out}, batch {batch}', 'exact': exact,
          'weight_bytes_fp32': int(wb.size * 4),
          'weight_bytes_packed': int(words.size * 4),
          'activation_bytes_fp32': int(x.size * 4),
          'activation_bytes_packed': int(bitpack.pack(x >= 0).size * 4),
          'ms_fp32': ms['fp32'], 'ms_packed': ms['packed']}


def conv_case(batch, hw, cin, cout, rounds):
  kx, kw = jax.random.split(jax.random.key(1))
  x, w = _pm1(kx, (batch, hw, hw, cin)), jax.random.normal(kw, (3, 3, cin,
                                                                 cout))
  wb = bm.binarize(w)
  words, _ = bitpack.pack_kernel(w)
  f32 = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  packed = jax.jit(lambda x, words: bitpack.packed_conv(x, words, (3, 3)))
  exact = bool(np.array_equal(np.asarray(f32(x, wb)),
                              np.asarray(packed(x, words))))
  ms = _time({'fp32': f32, 'packed': packed},
             {'fp32': (x, wb), 'packed': (x, words)}, rounds)
  return {'case': f'conv 3x3 {cin}->{cout} SAME, {hw}x{hw}, batch {batch}',
          'exact': exact, 'weight_bytes_fp32': int(wb.size * 4),
          'weight_bytes_packed': int(words.size * 4),
          'activation_bytes_fp32': int(x.size * 4),
          'activation_bytes_packed': int(bitpack.pack(x >= 0).size * 4),
          'ms_fp32': ms['fp32'], 'ms_packed': ms['packed']}


def model_case(batch, rounds):
  model = models.get_model('bnn_lenet5', features=(32, 64, 256), hidden=256)
  x = jax.random.normal(jax.random.key(2), (batch, 32, 32, 1))
  v = model.init(jax.random.key(3), x)
  packed = bitpack.packed_weights(model, v, x)
  f32 = jax.jit(lambda v, x: model.apply(v, x))
  pk = jax.jit(lambda v, x, p: bitpack.apply_packed(model, v, x, p))
  exact = bool(np.array_equal(np.asarray(f32(v, x)),
                              np.asarray(pk(v, x, packed))))
  ms = _time({'fp32': f32, 'packed': pk},
             {'fp32': (v, x), 'packed': (v, x, packed)}, rounds)
  kb = sum(int(np.prod(v['params'][p]['kernel'].shape)) * 4 for p in packed)
  return {'case': f'bnn_lenet5 (32,64,256)+256 logits, batch {batch}',
          'exact': exact, 'weight_bytes_fp32': kb,
          'weight_bytes_packed': sum(int(w.size * 4) for w, _ in
                                     packed.values()),
          'ms_fp32': ms['fp32'], 'ms_packed': ms['packed']}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--rounds', type=int, default=15)
  ap.add_argument('--out', default=os.path.join(
      ROOT, 'benchmarks', 'results', 'binary_packed_cpu.json'))
  args = ap.parse_args(argv)
  rows = [dense_case(64, 4096, 4096, args.rounds),
          dense_case(1, 4096, 4096, args.rounds),
          conv_case(16, 16, 256, 256, args.rounds),
          model_case(256, args.rounds)]
  print(f'{"case":48s} {"exact":>5s} {"weights fp32":>13s} {"packed":>9s} '
        f'{"ratio":>6s} {"ms fp32":>8s} {"ms packed":>9s} {"speed-up":>8s}')
  for r in rows:
    r['memory_ratio'] = r['weight_bytes_packed'] / r['weight_bytes_fp32']
    r['speedup'] = r['ms_fp32'] / r['ms_packed']
    print(f'{r["case"]:48s} {str(r["exact"]):>5s} '
          f'{r["weight_bytes_fp32"]:13,d} {r["weight_bytes_packed"]:9,d} '
          f'{r["memory_ratio"]:6.4f} {r["ms_fp32"]:8.3f} '
          f'{r["ms_packed"]:9.3f} {r["speedup"]:8.3f}')
  out = {'device': jax.devices()[0].device_kind, 'backend':
         jax.default_backend(), 'cpu_count': os.cpu_count(),
         'platform': platform.platform(), 'jax': jax.__version__,
         'load_average': list(os.getloadavg()), 'rounds': args.rounds,
         'rows': rows}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(out, f, indent=2)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
