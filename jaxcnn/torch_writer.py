"""TensorBoard event files without TensorFlow, through PyTorch's writer.

clu's metric writers need TF (its package imports the TF summary writer
first), which accelerator images often lack while they do ship PyTorch.
This adapter gives metrics.make_writer the same write_* methods as a clu
MetricWriter, so scalars, images, histograms and texts still reach
TensorBoard there. Only used when TF cannot be imported.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


class TorchTensorboardWriter:
  """The clu MetricWriter methods jaxcnn uses, on torch's SummaryWriter."""

  def __init__(self, logdir: str):
    from torch.utils.tensorboard import SummaryWriter  # ImportError if absent
    self._w = SummaryWriter(log_dir=logdir)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    for k, v in scalars.items():
      self._w.add_scalar(k, float(v), global_step=step)

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    for k, v in images.items():
      v = np.asarray(v)
      if v.ndim == 3:
        v = v[None]
      if v.dtype != np.uint8:  # clu takes floats in [0, 1]
        v = np.clip(v, 0.0, 1.0)
      self._w.add_images(k, v, global_step=step, dataformats='NHWC')

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Mapping[str, int] | None = None) -> None:
    for k, v in arrays.items():
      bins = (num_buckets or {}).get(k, 30)
      self._w.add_histogram(k, np.asarray(v, np.float64).ravel(),
                            global_step=step, bins=bins)

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    for k, v in texts.items():
      self._w.add_text(k, str(v), global_step=step)

  def write_summaries(self, step: int, values: Mapping[str, Any],
                      metadata: Any = None) -> None:
    """Scalars, and histograms already bucketed on the device in the
    TensorBoard tensor layout [k, 3] = (left edge, right edge, count)."""
    del metadata
    for k, v in values.items():
      v = np.asarray(v, np.float64)
      if v.ndim == 0:
        self._w.add_scalar(k, float(v), global_step=step)
      elif v.ndim == 2 and v.shape[1] == 3 and len(v):
        left, right, count = v[:, 0], v[:, 1], v[:, 2]
        mid = (left + right) / 2
        self._w.add_histogram_raw(
            k, min=float(left[0]), max=float(right[-1]),
            num=float(count.sum()), sum=float((count * mid).sum()),
            sum_squares=float((count * mid * mid).sum()),
            bucket_limits=right.tolist(), bucket_counts=count.tolist(),
            global_step=step)
      else:
        raise ValueError(f'summary {k!r}: expected a scalar or [k, 3] '
                         f'histogram buckets, got shape {v.shape}')

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self.write_texts(0, {'hparams': repr(dict(hparams))})

  def flush(self) -> None:
    self._w.flush()

  def close(self) -> None:
    self._w.close()
