"""int8 / int4 PTQ of runs/alexnet_cifar through the integer path (docs/quantization.md), on the
first N test images (CPU budget), printing running accuracies.

  JAXCNN_DATA_DIR=... python scripts/ptq_alexnet_eval.py 10000 8 4
"""
import sys, time, numpy as np, jax, ml_collections
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.dirname(__import__('os').path.abspath(__file__))))
from jaxcnn.compress import fixed_point, calibrate, session, apply, __main__ as cli
from jaxcnn import experiment
from jaxcnn.data import sources, augment
n, bits_list = int(sys.argv[1]), [int(b) for b in sys.argv[2:]]
c = cli.trained_config('runs/alexnet_cifar'); c.data_dir = None
model = experiment.build_model(c)
dense = session.load_dense('runs/alexnet_cifar')
print('weights', dense['weights'], 'step', dense['step'], flush=True)
spec = augment.spec_from_config(c.input)
splits = sources.load('cifar10', data_dir=None)
x, y = splits.x_test[:n], splits.y_test[:n]
fn = session._logits_fn(model, spec)
cal = calibrate.calibration_images(c, 8)
variants = {'dense': {'params': dense['params'], 'batch_stats': dense['batch_stats']}}
for b in bits_list:
  cfg = ml_collections.ConfigDict(dict(include='.*', exclude='', weight_bits=b, act_bits=8, calib_batches=8, act_percentile=100.0))
  m = fixed_point.Int8(cfg); m.set_calibration(model, cal, dense['batch_stats'])
  exp = m.export(dense['params'], {})
  variants[f'int{b}'] = {'params': exp['params'], 'batch_stats': dense['batch_stats']}
correct = {k: 0 for k in variants}
t = time.time()
for i in range(0, n, 500):
  for k, v in variants.items():
    logits = np.asarray(fn(v, x[i:i + 500]))
    correct[k] += int(np.sum(np.argmax(logits, -1) == y[i:i + 500]))
  seen = min(i + 500, n)
  print(seen, {k: round(c_ / seen, 4) for k, c_ in correct.items()}, f'{time.time() - t:.0f}s', flush=True)
