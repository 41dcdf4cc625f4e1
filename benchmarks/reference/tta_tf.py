"""TensorFlow 2 reference of a jaxcnn training recipe (benchmarks/tta.py).

  python -m benchmarks.reference.tta_tf --config configs/cifar10_tutorial.py \
      --epochs 10 --workdir /tmp/tta_tf

Reads a jaxcnn config and trains the same recipe the idiomatic TF2 way: the
same arrays (jaxcnn.data.sources.load, $JAXCNN_DATA_DIR), the same batches
(jaxcnn's per-epoch permutation, re-derived below), the config's on-the-fly
augmentation as a tf.data per-example map (tf.image random crop / flip /
brightness / contrast, then per-image standardisation or the configured
normalisation: the TF tutorial's distorted_inputs), the Keras model of
benchmarks/reference/keras_models.py with jaxcnn's initialisers, and a
tf.function step with jaxcnn's optimizer semantics (optax momentum SGD, the
same schedule, L2 as a loss term or coupled, TF-style EMA with num_updates).
Raw and EMA weights are evaluated every `--eval_every` steps. Output lines
and metrics.jsonl records have jaxcnn's format, so one parser reads both.
Imports no JAX: the process holds only TF.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time

import numpy as np

# jaxcnn layer names (for l2.include) and initialisers, per Conv2D/Dense layer
# in model order: 'tn:<stddev>' truncated normal, 'lecun' LeCun normal (Flax's
# default); then the constant bias.
_TUTORIAL = [('conv1', 'tn:0.05', 0.0), ('conv2', 'tn:0.05', 0.1),
             ('local3', 'tn:0.04', 0.1), ('local4', 'tn:0.04', 0.1),
             ('softmax_linear', f'tn:{1 / 192.0}', 0.0)]
LAYERS = {
    'cifar10_tutorial': _TUTORIAL,
    'alexnet_cifar': [(n, 'lecun', 0.0) for n in (
        'conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8')],
    'lenet5': [(n, 'lecun', 0.0) for n in ('C1', 'C3', 'C5', 'F6', 'output')],
}


def load_config(spec: str):
  """'configs/x.py[:arg]' -> its get_config(arg)."""
  path, _, arg = spec.partition(':')
  mod_spec = importlib.util.spec_from_file_location('_tta_config', path)
  module = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def train_rows(n: int, batch: int, seed: int, total_steps: int):
  """jaxcnn.data.pipeline.train_rows (one process): epoch e is
  default_rng([seed, e]).permutation(n) cut into full batches, each sorted;
  the last partial batch dropped (tests check the two agree)."""
  spe = n // batch
  for step in range(total_steps):
    epoch, i = divmod(step, spe)
    if i == 0 or step == 0:  # a new epoch, or the start
      perm = np.random.default_rng([seed, epoch]).permutation(n)
    yield np.sort(perm[i * batch:(i + 1) * batch])


def learning_rates(config, steps_per_epoch: int, total: int) -> np.ndarray:
  """lr of update 0..total-1: jaxcnn.optim.make_schedule in numpy."""
  o, t = config.optim, np.arange(total, dtype=np.float64)
  if o.schedule == 'constant':
    lr = np.full(total, o.learning_rate)
  elif o.schedule == 'staircase_exp':
    decay = max(1, int(o.decay_epochs * steps_per_epoch))
    lr = o.learning_rate * o.decay_rate ** np.floor(t / decay)
  elif o.schedule == 'cosine':
    warm = int(o.warmup_epochs * steps_per_epoch)
    if warm:  # optax.warmup_cosine_decay_schedule(0, lr, warm, total)
      span = max(max(total, warm + 1) - warm, 1)
      frac = np.clip((t - warm) / span, 0.0, 1.0)
      lr = np.where(t < warm, o.learning_rate * t / warm,
                    o.learning_rate * 0.5 * (1 + np.cos(np.pi * frac)))
    else:
      frac = np.minimum(t, max(total, 1)) / max(total, 1)
      lr = o.learning_rate * 0.5 * (1 + np.cos(np.pi * frac))
  else:
    raise ValueError(f'tta_tf: schedule {o.schedule!r} not supported')
  return lr.astype(np.float32)


def output_size(inp, hw: int) -> int:
  hw = hw + 2 * inp.pad
  hw = inp.resize or hw
  return inp.crop or hw


def _geometry(tf, x, inp):
  """x: float [..., H, W, C]: zero pad, then bilinear resize."""
  if inp.pad:
    p = inp.pad
    pads = [[0, 0]] * (len(x.shape) - 3) + [[p, p], [p, p], [0, 0]]
    x = tf.pad(x, pads)
  if inp.resize:
    x = tf.image.resize(x, [inp.resize, inp.resize], 'bilinear')
  return x


def _normalize(tf, x, inp):
  if inp.normalize == 'unit':
    return x / 255.0
  if inp.normalize == 'per_image':
    return tf.image.per_image_standardization(x)
  return (x - tf.constant(inp.mean, tf.float32)) / tf.constant(inp.std,
                                                                tf.float32)


def distort(tf, img, inp, channels: int):
  """One uint8 image -> the training input (jaxcnn/data/augment.py order:
  crop, flip, brightness, contrast on 0..255 floats without clipping)."""
  x = _geometry(tf, tf.cast(img, tf.float32), inp)
  if inp.crop and inp.random_crop:
    x = tf.image.random_crop(x, [inp.crop, inp.crop, channels])
  elif inp.crop:
    x = _central_crop(x, inp.crop)
  if inp.flip:
    x = tf.image.random_flip_left_right(x)
  if inp.brightness:
    x = tf.image.random_brightness(x, float(inp.brightness))
  if tuple(inp.contrast) != (1.0, 1.0):
    x = tf.image.random_contrast(x, *map(float, inp.contrast))
  return _normalize(tf, x, inp)


def _central_crop(x, size: int):
  h, w = int(x.shape[-3]), int(x.shape[-2])
  top, left = (h - size) // 2, (w - size) // 2
  return x[..., top:top + size, left:left + size, :]


def build_model(tf, config, shape, classes):
  """(keras model, [(jaxcnn name, layer)]) with jaxcnn's initialisers."""
  import keras
  from benchmarks.reference import keras_models
  name = config.model.name
  if name not in LAYERS:
    raise ValueError(f'tta_tf: no reference for model {name!r}; valid: '
                     f'{", ".join(LAYERS)}')
  key = name + ('_nolrn' if not config.model.get('use_lrn', True) else '')
  model = keras_models.build(key, shape, classes)
  layers = [l for l in model.layers
            if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
  assert len(layers) == len(LAYERS[name]), (name, len(layers))
  named = []
  for i, ((lname, init, bias), layer) in enumerate(zip(LAYERS[name], layers)):
    seed = config.seed * 1000 + i
    kinit = (keras.initializers.LecunNormal(seed=seed) if init == 'lecun' else
             keras.initializers.TruncatedNormal(stddev=float(init[3:]),
                                                seed=seed))
    layer.kernel.assign(kinit(layer.kernel.shape))
    layer.bias.assign(tf.fill(layer.bias.shape, bias))
    named.append((lname, layer))
  return model, named


def make_train_step(tf, config, model, named, jit: bool):
  """tf.function(x, y, lr, step) -> loss, updating weights, momenta, EMA."""
  import keras
  params = model.trainable_variables
  mask = re.compile(config.l2.include)
  decayed = {id(l.kernel) for n, l in named if mask.search(f'{n}/kernel')}
  l2_vars = [v for v in params if id(v) in decayed]
  mode, rate = config.l2.mode, float(config.l2.rate)
  mu, nesterov = float(config.optim.momentum), bool(config.optim.nesterov)
  value = tf.convert_to_tensor
  moms = [tf.Variable(tf.zeros_like(value(v)), trainable=False)
          for v in params] if mu else []
  ema = [tf.Variable(value(v), trainable=False)
         for v in params] if config.ema_decay else []
  ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function(jit_compile=jit)
  def step(x, y, lr, t):
    with tf.GradientTape() as tape:
      logits = tf.cast(model(x, training=True), tf.float32)
      loss = ce(y, logits)
      if mode == 'loss' and rate and l2_vars:
        loss += rate * tf.add_n([tf.nn.l2_loss(v) for v in l2_vars])
    grads = tape.gradient(loss, params)
    for i, (g, v) in enumerate(zip(grads, params)):
      if mode == 'coupled' and rate and id(v) in decayed:
        g = g + rate * v  # optax.add_decayed_weights, before the momentum
      if mu:  # optax.trace: m = g + mu m; nesterov uses g + mu m
        moms[i].assign(g + mu * moms[i])
        g = g + mu * moms[i] if nesterov else moms[i]
      v.assign_sub(lr * g)
    if ema:  # jaxcnn.optim.ema_decay_at(t), t = updates before this one
      d = tf.minimum(float(config.ema_decay), (1.0 + t) / (10.0 + t))
      for e, v in zip(ema, params):
        e.assign(d * e + (1.0 - d) * v)
    return loss
  return step, ema


def make_eval(tf, config, model):
  """evaluate(weights) -> {'precision@1', 'top5', 'loss', 'count'}."""
  import keras
  inp = config.input
  ce = keras.losses.SparseCategoricalCrossentropy(
      from_logits=True, reduction='sum')

  @tf.function
  def batch_totals(x, y):
    x = _geometry(tf, tf.cast(x, tf.float32), inp)
    if inp.crop:
      x = _central_crop(x, inp.crop)
    logits = tf.cast(model(_normalize(tf, x, inp), training=False),
                     tf.float32)
    top1 = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, tf.int32),
                                          y), tf.float32))
    top5 = tf.reduce_sum(tf.cast(tf.math.in_top_k(y, logits, 5), tf.float32))
    return top1, top5, ce(y, logits)

  def evaluate(ds, weights=None):
    saved = None
    if weights is not None:  # EMA: swap in, evaluate, swap back
      saved = [v.numpy() for v in model.trainable_variables]
      for v, e in zip(model.trainable_variables, weights):
        v.assign(e)
    tot = np.zeros(3)
    n = 0
    for x, y in ds:
      tot += [float(a) for a in batch_totals(x, y)]
      n += int(y.shape[0])
    if saved is not None:
      for v, s in zip(model.trainable_variables, saved):
        v.assign(s)
    return {'precision@1': tot[0] / n, 'top5': tot[1] / n,
            'loss': tot[2] / n, 'count': float(n)}
  return evaluate


def _datasets(tf, config, splits, rows, channels):
  """(train batches over all steps, test batches): tf.data, the tutorial's
  per-example distortions in parallel map calls, prefetched."""
  auto = tf.data.AUTOTUNE
  images, labels = tf.constant(splits.x_train), tf.constant(splits.y_train)
  inp = config.input
  train = (tf.data.Dataset.from_tensor_slices(rows)
           .map(lambda i: (distort(tf, tf.gather(images, i), inp, channels),
                           tf.gather(labels, i)), num_parallel_calls=auto)
           .batch(config.batch_size, drop_remainder=True).prefetch(auto))
  test = (tf.data.Dataset.from_tensor_slices((splits.x_test, splits.y_test))
          .batch(config.eval_batch_size).prefetch(auto))
  return train, test


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', required=True, help='configs/x.py[:arg]')
  p.add_argument('--epochs', type=float, required=True)
  p.add_argument('--steps', type=int, default=0,
                 help='train steps per epoch (0: train size // batch)')
  p.add_argument('--workdir', required=True, help='metrics.jsonl goes here')
  p.add_argument('--data_dir', default='', help="default: the config's, "
                 'else $JAXCNN_DATA_DIR')
  p.add_argument('--jit_compile', type=int, default=0,
                 help='1: XLA-compile the train step (tf.function default: 0)')
  return p.parse_args(argv)


class _Log:
  """jaxcnn's log lines and metrics.jsonl records (plus time_s)."""

  def __init__(self, workdir, t0):
    os.makedirs(workdir, exist_ok=True)
    self.f = open(os.path.join(workdir, 'metrics.jsonl'), 'w')
    self.t0 = t0

  def record(self, step, split, values):
    self.f.write(json.dumps({'step': step, 'split': split, **values,
                             'time_s': time.monotonic() - self.t0}) + '\n')
    self.f.flush()

  def train(self, step, loss, sec_per_batch, batch):
    print(f'step {step}, loss = {loss:.3f} ({batch / sec_per_batch:.1f} '
          f'examples/sec; {sec_per_batch:.3f} sec/batch)', flush=True)
    self.record(step, 'train', {'loss': loss,
                                'examples_per_sec': batch / sec_per_batch})

  def eval(self, step, results):
    for name, r in results.items():  # both printed after both ran: as jaxcnn
      suffix = '' if name == 'params' else f' ({name})'
      print(f"step {step}: precision @ 1 = {r['precision@1']:.3f}{suffix}, "
            f"top-5 = {r['top5']:.3f}, loss = {r['loss']:.4f}", flush=True)
      self.record(step, f'eval_{name}', r)


def main(argv=None) -> int:
  t0 = time.monotonic()
  args = _parse(argv)
  import tensorflow as tf
  from jaxcnn.data import datasets, sources
  config = load_config(args.config)
  tf.random.set_seed(config.seed)
  if config.precision == 'bfloat16':
    import keras
    keras.mixed_precision.set_global_policy('mixed_bfloat16')
  splits = sources.load(config.dataset.name,
                        data_dir=args.data_dir or config.data_dir,
                        cache_dir=config.cache_dir, allow_download=False)
  print(f'data: {splits.source}', flush=True)
  info = datasets.get_info(config.dataset.name)
  h, _, c = info.image_shape
  size = output_size(config.input, h)
  spe_data = len(splits.x_train) // config.batch_size
  spe = args.steps or spe_data
  total = int(args.epochs * spe)
  model, named = build_model(tf, config, (size, size, c), info.num_classes)
  step_fn, ema = make_train_step(tf, config, model, named,
                                 bool(args.jit_compile))
  evaluate = make_eval(tf, config, model)
  lrs = learning_rates(config, spe_data, total)  # schedules count real epochs
  rows = np.concatenate(list(train_rows(len(splits.x_train),
                                        config.batch_size, config.seed,
                                        total)))
  train, test = _datasets(tf, config, splits, rows, c)
  log = _Log(args.workdir, t0)
  every = config.log_every_steps
  tick, last = time.perf_counter(), 0
  for step, (x, y) in enumerate(train, start=1):
    loss = step_fn(x, y, tf.constant(lrs[step - 1]),
                   tf.constant(float(step - 1)))
    if (every and step % every == 0) or step == total:
      loss = float(loss)  # the one sync between logs, as in jaxcnn
      log.train(step, loss, (time.perf_counter() - tick) / (step - last),
                config.batch_size)
      tick, last = time.perf_counter(), step
    if step % spe == 0 or step == total:
      results = {'params': evaluate(test)}
      if ema:
        results['ema'] = evaluate(test, ema)
      log.eval(step, results)
      tick, last = time.perf_counter(), step  # eval time left out
  return 0


if __name__ == '__main__':
  sys.exit(main())
