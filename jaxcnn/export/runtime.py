"""Runs an exported file in its deployment runtime, with no jaxcnn model
code: LiteRT's interpreter (XNNPACK) for .tflite, `jax.export.deserialize`
for StableHLO. The format is read from the file's bytes, not its name.

FILE.json beside the model (written by export) gives the class names; without
it the classes are named by index and the input shape comes from the model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from jaxcnn.export import SIDECAR_VERSION, ExportError, sidecar_path

# FlatBuffers put the schema's 4-byte file identifier at bytes 4..8.
_TFLITE_ID = b'TFL3'


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]  # H, W, C of the uint8 input


def detect_format(data: bytes) -> str:
  return 'tflite' if data[4:8] == _TFLITE_ID else 'stablehlo'


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def read_sidecar(path: str, data: bytes) -> dict | None:
  """FILE.json, checked to describe exactly these bytes; None if absent."""
  side = sidecar_path(path)
  if not os.path.exists(side):
    return None
  try:
    with open(side) as f:
      meta = json.load(f)
  except (OSError, ValueError) as e:
    raise ExportError(f'cannot read {side}: {e}; re-export the model or '
                      'remove the file') from None
  if not isinstance(meta, dict) or meta.get('version') != SIDECAR_VERSION:
    raise ExportError(f'{side}: not a version-{SIDECAR_VERSION} export '
                      'sidecar; re-export the model or remove the file')
  if meta.get('sha256') != sha256(data):
    raise ExportError(f'{side} describes another file (sha256 differs from '
                      f'{path}); re-export the model or remove the file')
  return meta


def _batched(run, images: np.ndarray, batch: int | None) -> np.ndarray:
  """A fixed-batch graph takes exactly `batch` images: chunk, pad the last
  chunk with copies of its last image (not zeros: an all-black image makes
  an int8 per_image-normalised model divide by zero, docs/export.md), drop
  the padding's outputs."""
  if batch is None or len(images) == batch:
    return run(images)
  outs = []
  for i in range(0, len(images), batch):
    chunk = images[i:i + batch]
    pad = batch - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
    outs.append(run(chunk)[:batch - pad])
  return np.concatenate(outs)


class LiteRTRunner:
  """One LiteRT interpreter; resizes its input when the batch is symbolic."""

  def __init__(self, data: bytes, num_threads: int | None = None):
    # Lazy: predict --workdir never needs the LiteRT runtime.
    from ai_edge_litert.interpreter import Interpreter
    self._it = Interpreter(model_content=data, num_threads=num_threads)
    inp, = self._it.get_input_details()
    out, = self._it.get_output_details()
    self._in, self._out = inp['index'], out['index']
    sig = [int(d) for d in inp['shape_signature']]
    self.batch = None if sig[0] < 1 else sig[0]
    self.image_shape = tuple(sig[1:])
    self.num_classes = int(out['shape_signature'][-1])
    self._n = self.batch or int(inp['shape'][0])
    try:
      self._it.allocate_tensors()
    except RuntimeError as e:  # XNNPACK refused the graph (docs/export.md)
      why = ' '.join(str(e).split())
      raise ExportError(f'LiteRT cannot prepare this model: {why} (see '
                        'docs/export.md, known limitations)') from None

  def _run(self, x: np.ndarray) -> np.ndarray:
    if len(x) != self._n:
      self._it.resize_tensor_input(self._in, x.shape)
      self._it.allocate_tensors()
      self._n = len(x)
    self._it.set_tensor(self._in, x)
    try:
      self._it.invoke()
    except RuntimeError as e:  # a kernel's check failed on this input
      why = ' '.join(str(e).split())
      raise ExportError(f'LiteRT failed on this input: {why} (see '
                        'docs/export.md, known limitations)') from None
    return self._it.get_tensor(self._out).copy()

  def __call__(self, images: np.ndarray) -> np.ndarray:
    return _batched(self._run, images, self.batch)


class StableHLORunner:
  """A deserialized jax.export.Exported, jitted once per input shape."""

  def __init__(self, data: bytes):
    # Lazy, as in predict.Predictor: importing predict must stay cheap.
    import jax
    try:
      self.exported = jax.export.deserialize(bytearray(data))
    except Exception as e:  # flatbuffer errors have no common base class
      raise ExportError(f'not a LiteRT or jax.export StableHLO file '
                        f'({type(e).__name__}); re-export it') from None
    aval, = self.exported.in_avals
    n = aval.shape[0]
    self.batch = n if isinstance(n, int) else None
    self.image_shape = tuple(int(d) for d in aval.shape[1:])
    self.num_classes = int(self.exported.out_avals[0].shape[-1])
    self._call = jax.jit(self.exported.call)

  def __call__(self, images: np.ndarray) -> np.ndarray:
    return _batched(lambda x: np.asarray(self._call(x)), images, self.batch)


class ExportedModel:
  """An exported file with its sidecar: `predict` takes uint8 [N,H,W,C]."""

  def __init__(self, path: str, num_threads: int | None = None):
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError as e:
      raise ExportError(f'--model {path}: cannot read ({e.strerror})') from None
    if len(data) < 8:
      raise ExportError(f'--model {path}: not an exported model '
                        f'({len(data)} bytes); re-export it')
    self.path, self.format = path, detect_format(data)
    self.meta = read_sidecar(path, data)
    self.runner = (LiteRTRunner(data, num_threads) if self.format == 'tflite'
                   else StableHLORunner(data))
    r = self.runner
    names = (tuple(self.meta['class_names']) if self.meta else
             tuple(str(i) for i in range(r.num_classes)))
    self.info = ModelInfo(names, r.image_shape)

  def predict(self, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[1:] != self.info.image_shape:
      raise ExportError(f'{self.path} takes uint8 [N, '
                        f'{", ".join(map(str, self.info.image_shape))}] '
                        f'images, got {images.dtype} {list(images.shape)}')
    return self.runner(np.ascontiguousarray(images))
