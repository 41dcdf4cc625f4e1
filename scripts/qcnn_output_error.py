"""Relative output error ||X(W - W_q)||^2 / ||XW||^2 of PQ vs Q-CNN on the
tutorial net's local3/local4: X from the calibration batches (train) and
from 2,000 test images (held out).

  JAXCNN_DATA_DIR=... python scripts/qcnn_output_error.py
"""
import sys, time, numpy as np
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.dirname(__import__('os').path.abspath(__file__))))
from jaxcnn.compress import calibrate, pq, session, __main__ as cli
from jaxcnn import experiment
from jaxcnn.data import sources, augment
c = cli.trained_config('runs/cifar10_tutorial')
c.data_dir = None
model = experiment.build_model(c)
dense = session.load_dense('runs/cifar10_tutorial')
v = {'params': dense['params']}
cal = calibrate.calibration_images(c, 8)
splits = sources.load('cifar10', data_dir=None)
test = np.asarray(augment.preprocess_eval(splits.x_test[:2000], augment.spec_from_config(c.input)))
g_cal = calibrate.input_grams(model, v, cal)
g_test = calibrate.input_grams(model, v, test)
for layer in ('local3', 'local4'):
  w = np.asarray(dense['params'][layer]['kernel'], np.float64)
  t = time.time(); b, cd = pq.pq_kmeans(w, 8, 16, 20, 0); wp = pq._rebuild(b, cd); tp = time.time() - t
  t = time.time(); b, cd = pq.qcnn(w, g_cal[layer], 8, 16, 20, 2, 0); wq = pq._rebuild(b, cd); tq = time.time() - t
  for name, g in (('calib', g_cal[layer]), ('test', g_test[layer])):
    ref = float(np.sum(w * (g @ w)))
    print(f'{layer} {name}: PQ {pq.output_error(w, wp, g) / ref:.4f}  Q-CNN {pq.output_error(w, wq, g) / ref:.4f}', flush=True)
  print(f'{layer} weight error ||W-Wq||^2/||W||^2: PQ {np.sum((w-wp)**2)/np.sum(w**2):.4f}  Q-CNN {np.sum((w-wq)**2)/np.sum(w**2):.4f}  (time {tp:.0f}s / {tq:.0f}s)', flush=True)
