"""TensorBoard event files written without TensorFlow.

clu's TensorBoard writer goes through TF's summary ops, so every training
process imported TensorFlow (~1 GB of shared libraries, its thread pools and
allocator) only to append protobufs to a file. This writer builds the same
TF2-style summaries (a tensor plus its plugin's metadata, what tf.summary
writes) with the `tensorboard` package and appends them as TFRecords to a plain
local file (tensorboard's own EventFileWriter opens its file through
`tf.io.gfile`, which imports TensorFlow whenever it is installed). Each write is
synchronous and flushed (a log step's event is a few hundred bytes): a killed
run keeps every event up to its last log step. It has the methods of
a clu MetricWriter that jaxcnn calls; tests/test_events.py reads every kind
back through TensorBoard's EventAccumulator.
"""
from __future__ import annotations

import io
import itertools
import os
import socket
import time
from typing import Any, Mapping

import numpy as np
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

_PIL_MODES = {1: 'L', 3: 'RGB', 4: 'RGBA'}
_FILE_IDS = itertools.count()  # two writers in one second and process differ


def png_bytes(image: np.ndarray) -> bytes:
  """[H, W, C] image, uint8 or float in [0, 1] (clu's convention) -> PNG."""
  x = np.asarray(image)
  if x.ndim != 3 or x.shape[-1] not in _PIL_MODES:
    raise ValueError(f'image must be [H, W, 1|3|4], got shape {x.shape}')
  if x.dtype != np.uint8:
    x = np.round(np.clip(np.nan_to_num(x.astype(np.float32)), 0, 1) * 255)
    x = x.astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x,
                  _PIL_MODES[x.shape[-1]]).save(buf, 'PNG')
  return buf.getvalue()


def image_tensor(images: np.ndarray) -> np.ndarray:
  """[N, H, W, C] (or one [H, W, C]) -> the image plugin's string tensor:
  width, height, then one PNG per image."""
  x = np.asarray(images)
  x = x[None] if x.ndim == 3 else x
  if x.ndim != 4:
    raise ValueError(f'images must be [N, H, W, C], got shape {x.shape}')
  return np.array([str(x.shape[2]).encode(), str(x.shape[1]).encode()] +
                  [png_bytes(im) for im in x], dtype=object)


def histogram_buckets(values: np.ndarray, bins: int = 30) -> np.ndarray:
  """[bins, 3] = (left edge, right edge, count), the histogram plugin's
  layout; non-finite entries are dropped, nothing left gives [0, 3]."""
  v = np.asarray(values, np.float64).ravel()
  v = v[np.isfinite(v)]
  if not v.size:
    return np.zeros((0, 3))
  counts, edges = np.histogram(v, bins=bins)
  return np.stack([edges[:-1], edges[1:], counts], axis=1)


def _value(tag: str, tensor: Any, metadata=None) -> summary_pb2.Summary.Value:
  value = summary_pb2.Summary.Value(
      tag=tag, tensor=tensor_util.make_tensor_proto(tensor))
  if metadata is not None:
    value.metadata.CopyFrom(metadata)
  return value


class EventWriter:
  """The clu MetricWriter methods jaxcnn uses, writing events.out.tfevents.*
  into `logdir` with no TensorFlow import."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    self.path = os.path.join(logdir, 'events.out.tfevents.%010d.%s.%d.%d' % (
        time.time(), socket.gethostname(), os.getpid(), next(_FILE_IDS)))
    self._w = RecordWriter(open(self.path, 'wb'))
    self._meta = {}
    self._write(event_pb2.Event(wall_time=time.time(),
                                file_version='brain.Event:2'))
    self.flush()

  def _write(self, event) -> None:
    self._w.write(event.SerializeToString())

  def _metadata(self, plugin, tag: str):
    key = (plugin.__name__, tag)
    if key not in self._meta:
      self._meta[key] = plugin.create_summary_metadata(display_name=tag,
                                                       description='')
    return self._meta[key]

  def _add(self, step: int, values: list) -> None:
    if values:
      self._write(event_pb2.Event(
          wall_time=time.time(), step=int(step),
          summary=summary_pb2.Summary(value=values)))
      self._w.flush()

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    self._add(step, [_value(k, np.float32(v), self._metadata(
        scalar_metadata, k)) for k, v in scalars.items()])

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    self._add(step, [_value(k, image_tensor(v), self._metadata(
        image_metadata, k)) for k, v in images.items()])

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Mapping[str, int] | None = None) -> None:
    self._add(step, [_value(
        k, histogram_buckets(v, (num_buckets or {}).get(k, 30)),
        self._metadata(histogram_metadata, k)) for k, v in arrays.items()])

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    self._add(step, [_value(k, np.array(str(v).encode(), dtype=object),
                            self._metadata(text_metadata, k))
                     for k, v in texts.items()])

  def write_summaries(self, step: int, values: Mapping[str, Any],
                      metadata: Mapping[str, Any] | None = None) -> None:
    """Tensors with the metadata given for them (e.g. histograms bucketed on
    the device as [k, 3]); a 0-d value without metadata is a scalar."""
    out = []
    for k, v in values.items():
      meta = (metadata or {}).get(k)
      if meta is None and np.ndim(v) == 0:
        meta, v = self._metadata(scalar_metadata, k), np.float32(v)
      out.append(_value(k, np.asarray(v), meta))
    self._add(step, out)

  def flush(self) -> None:
    self._w.flush()

  def close(self) -> None:
    if not self._w.closed:
      self._w.close()
