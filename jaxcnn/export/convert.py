"""A workdir -> StableHLO (jax.export) or LiteRT (.tflite) bytes.

The exported function is `steps.predict_step` with a plain run's weights
baked in as constants, or a compression artifact's forward pass
(families.py), each uint8 [N, H, W, C] -> eval preprocessing -> model ->
float32 softmax. Nothing of jaxcnn is needed to run the result.

Batch: StableHLO keeps N symbolic (XLA compiles per concrete shape at call
time, at no cost to the graph). LiteRT defaults to a fixed batch of 1: with
a symbolic N, jax2tf emits shape arithmetic (SHAPE, GATHER, BROADCAST_TO,
BATCH_MATMUL) that XNNPACK does not take, measured ~10x slower per image on
the quickstart LeNet (docs/export.md).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import json
import os
import sys
import tempfile
import types

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import experiment, predict, reopen, steps
from jaxcnn.data import augment
from jaxcnn.errors import CheckpointError
from jaxcnn.export import (FORMATS, QUANTIZE, SIDECAR_VERSION, SUPPORTED,
                           ExportError, families, runtime, sidecar_path)
from jaxcnn.export.families import Run

# StableHLO carries one lowering per platform; CUDA is lowered here without
# a GPU (jax.export cross-lowers), so the file also runs under jax[cuda].
STABLEHLO_PLATFORMS = ('cpu', 'cuda')
# The TFLite converter reads the StableHLO inside jax2tf's XlaCallModule;
# lower it for CPU whatever backend this process has.
TFLITE_PLATFORMS = ('cpu',)
DEFAULT_CALIB_IMAGES = 512


def check_request(fmt: str, quantize: str, batch: int) -> None:
  """One-line ExportError for a format/quantize/batch the exporter lacks."""
  if fmt not in FORMATS:
    raise ExportError(f'--format {fmt!r} is not supported; valid: '
                      f'{", ".join(FORMATS)}')
  if quantize not in QUANTIZE:
    raise ExportError(f'--quantize {quantize!r} is not supported; valid: '
                      f'{", ".join(QUANTIZE)}')
  if quantize not in SUPPORTED[fmt]:
    pairs = '; '.join(f'{f}: {", ".join(q)}' for f, q in SUPPORTED.items())
    raise ExportError(f'--format {fmt} cannot hold --quantize {quantize}; '
                      f'supported pairs are {pairs}')
  if batch < 0:
    raise ExportError(f'--batch must be >= 0 (0: symbolic), got {batch}')


def check_output(path: str) -> str:
  """The absolute output path, or ExportError if it cannot be written.
  Checked before the (slow) conversion, by creating a probe file."""
  if not path or not path.strip():
    raise ExportError('--output is empty: give a file path')
  path = os.path.abspath(path)
  parent = os.path.dirname(path)
  if os.path.isdir(path):
    raise ExportError(f'--output {path} is a directory; give a file path')
  if not os.path.isdir(parent):
    why = 'is not a directory' if os.path.exists(parent) else 'does not exist'
    raise ExportError(f'--output {path}: {parent} {why}; create the '
                      'directory or choose another --output')
  probe = os.path.join(parent, f'.export_probe.{os.getpid()}')
  try:
    with open(probe, 'wb'):
      pass
    os.remove(probe)
  except OSError as e:
    raise ExportError(f'--output {path}: directory {parent} is not writable '
                      f'({e.strerror}); choose another --output') from None
  return path


def _has_checkpoint(directory: str) -> bool:
  return os.path.isdir(directory) and any(
      name.isdigit() for name in os.listdir(directory))


def load_run(workdir: str, weights: str = 'auto', fmt: str = 'stablehlo',
             quantize: str = 'none') -> Run:
  """A plain workdir's latest verified checkpoint, or a compression
  workdir's artifact (families.py), as an exportable function."""
  config = reopen.config_of(workdir)
  method = families.method_of(config)
  if method:
    return families.load_artifact_run(workdir, config, method, fmt, quantize,
                                      weights)
  directory = os.path.join(workdir, 'checkpoints')
  if not _has_checkpoint(directory):
    raise CheckpointError(f'no checkpoint in {directory}: train first '
                          f'(python -m jaxcnn.main --workdir {workdir} ...)')
  # Predictor restores through checkpoint.load_latest (digests verified) and
  # resolves --weights exactly as predict and eval do.
  pred = predict.Predictor(workdir, weights)
  use_ema = weights == 'ema' or (weights == 'auto' and config.ema_decay > 0)
  # Host copies: the constants must not carry the training mesh's sharding.
  params, batch_stats = jax.device_get((pred.params, pred.batch_stats))
  fn = functools.partial(
      steps.predict_step, params, batch_stats,
      model=experiment.build_model(config),
      input_spec=augment.spec_from_config(config.input))
  return Run(workdir, config, tuple(pred.info.class_names),
             tuple(pred.info.image_shape), int(pred.step),
             'ema' if use_ema else 'params', fn)


def to_stablehlo(run: Run, batch: int = 0) -> bytes:
  """jax.export's serialization; `batch` 0 keeps N symbolic."""
  n = jax.export.symbolic_shape('batch')[0] if batch == 0 else batch
  spec = jax.ShapeDtypeStruct((n, *run.image_shape), jnp.uint8)
  exported = jax.export.export(jax.jit(run.fn),
                               platforms=STABLEHLO_PLATFORMS)(spec)
  return bytes(exported.serialize())


def calibration_images(config, count: int) -> np.ndarray:
  """`count` real training images (a seeded random subset), uint8 as stored:
  the int8 converter calibrates the whole function, preprocessing included."""
  if count < 1:
    raise ExportError(f'--calib_images must be >= 1, got {count}')
  return experiment.train_subset(config, count)


def _representative(images: np.ndarray, batch: int):
  """The converter's representative_dataset: batches of the graph's shape."""
  step = batch or 32
  def gen():
    for i in range(0, len(images) - step + 1, step):
      yield [images[i:i + step]]
  return gen


def to_tflite(run: Run, quantize: str = 'none', batch: int = 1,
              calib: np.ndarray | None = None, sparse: bool = False) -> bytes:
  """jax2tf (native serialization, the only mode jax 0.10 has) + the TFLite
  converter. int8 is full-integer: int8 weights and activations, the uint8
  input cast inside, float32 probabilities out (DEQUANTIZE at the end)."""
  # Lazy: TensorFlow costs seconds to import and only this path needs it.
  import tensorflow as tf
  from jax.experimental import jax2tf
  tf.config.set_visible_devices([], 'GPU')  # JAX owns every GPU
  poly = ['(batch, ...)'] if batch == 0 else None
  tf_fn = tf.function(
      jax2tf.convert(run.fn, polymorphic_shapes=poly, with_gradient=False,
                     native_serialization_platforms=TFLITE_PLATFORMS),
      autograph=False, input_signature=[tf.TensorSpec(
          (batch or None, *run.image_shape), tf.uint8, name='images')])
  conv = tf.lite.TFLiteConverter.from_concrete_functions(
      [tf_fn.get_concrete_function()], tf_fn)
  if quantize == 'fp16':
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
  elif quantize == 'int8':
    if calib is None or len(calib) < (batch or 32):
      raise ExportError(f'int8 needs at least {batch or 32} calibration '
                        'images')
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _representative(calib, batch)
    # Only int8 kernels: a float fallback would be a silent hybrid model.
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  if sparse:
    conv.optimizations = [*conv.optimizations,
                          tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  with _stderr_to_file() as log:
    try:
      return conv.convert()
    except Exception as e:  # the converter's errors are long MLIR dumps
      log.keep = True
      hint = ('; a fixed --batch N (default 1) avoids the symbolic-shape '
              'ops' if batch == 0 else '')
      raise ExportError(f'the TFLite converter failed for --quantize '
                        f'{quantize} --batch {batch}: {_converter_reason(e)}'
                        f'{hint} (converter log: {log.path})') from None


@contextlib.contextmanager
def _stderr_to_file():
  """The converter's native code prints pages of MLIR to fd 2: send them
  to a file, kept (and named in the error) only if the conversion fails."""
  fd, path = tempfile.mkstemp(prefix='jaxcnn-tflite-', suffix='.log')
  log = types.SimpleNamespace(path=path, keep=False)
  saved = os.dup(2)
  sys.stderr.flush()
  os.dup2(fd, 2)
  try:
    yield log
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(fd)
    if not log.keep:
      os.remove(path)


def _converter_reason(e: Exception) -> str:
  """The MLIR diagnostic (`error: 'op' is not ...`) without its stack of
  source locations."""
  text = ' '.join(str(e).split())
  reasons = [r.split(' loc(')[0].split('. ')[0].strip()
             for r in text.split('error: ')[1:]]
  reasons = [r for r in reasons if r and not r.startswith('failed while')]
  return (reasons[0] if reasons else text)[:300]


def write_atomic(path: str, data: bytes) -> None:
  """Readers never see a half-written model: write aside, then rename."""
  tmp = f'{path}.tmp.{os.getpid()}'
  try:
    with open(tmp, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except OSError as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise ExportError(f'cannot write {path}: {e.strerror}; choose another '
                      '--output') from None


def sidecar(run: Run, fmt: str, quantize: str, batch: int, data: bytes,
            calib: np.ndarray | None, sparse: bool = False) -> dict:
  """FILE.json: what predict needs (class names, input shape) and where the
  file came from. sha256 ties it to these exact bytes; gzip_bytes is what
  the file costs inside an app's compressed package."""
  spec = run.input_spec or augment.spec_from_config(run.config.input)
  return {
      'version': SIDECAR_VERSION, 'format': fmt, 'quantize': quantize,
      'batch': batch or None,  # null: symbolic
      'input': {'dtype': 'uint8', 'layout': 'NHWC',
                'shape': [batch or None, *run.image_shape]},
      'output': {'dtype': 'float32', 'what': 'class probabilities (softmax)',
                 'shape': [batch or None, len(run.class_names)]},
      'class_names': list(run.class_names),
      'dataset': run.config.dataset.name, 'model': run.config.model.name,
      'preprocessing': dataclasses.asdict(spec),
      'workdir': os.path.abspath(run.workdir), 'step': run.step,
      'weights': run.weights,
      'platforms': list(STABLEHLO_PLATFORMS if fmt == 'stablehlo'
                        else TFLITE_PLATFORMS),
      'calibration': None if calib is None else {
          'images': int(len(calib)), 'split': 'train',
          'seed': int(run.config.seed)},
      'jax': jax.__version__,
      'bytes': len(data), 'sha256': runtime.sha256(data),
      'gzip_bytes': len(gzip.compress(data, 9)),
      'source': 'artifact' if run.compression else 'checkpoint',
      'compression': run.compression,
      'sparse_tensors': sparse,
  }


def export(workdir: str, fmt: str, output: str, quantize: str = 'none',
           weights: str = 'auto', batch: int | None = None,
           calib_images: int = DEFAULT_CALIB_IMAGES,
           sparse: bool = False) -> dict:
  """Writes `output` and its sidecar; returns the sidecar. `batch` None:
  symbolic for StableHLO, 1 for LiteRT (see the module docstring).
  `sparse`: LiteRT sparse weight tensors (the converter's
  EXPERIMENTAL_SPARSITY), for measuring pruned nets (docs/export.md)."""
  if batch is None:
    batch = 0 if fmt == 'stablehlo' else 1
  check_request(fmt, quantize, batch)
  output = check_output(output)
  if sparse and (fmt, quantize) != ('tflite', 'none'):
    # int8 + sparse tensors ran at 10% top-1 (chance) in LiteRT 2.3.0.
    raise ExportError('--sparse is supported with --format tflite '
                      '--quantize none only (int8 sparse files measured '
                      'wrong, docs/export.md)')
  run = load_run(workdir, weights, fmt, quantize)
  calib = (calibration_images(run.config, calib_images)
           if quantize == 'int8' else None)
  data = (to_stablehlo(run, batch) if fmt == 'stablehlo' else
          to_tflite(run, quantize, batch, calib, sparse))
  meta = sidecar(run, fmt, quantize, batch, data, calib, sparse)
  write_atomic(output, data)
  write_atomic(sidecar_path(output),
               (json.dumps(meta, indent=1) + '\n').encode())
  return meta
