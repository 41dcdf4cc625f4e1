"""The TF-free TensorBoard writer (used where PyTorch is but TF is not)
writes event files TensorBoard reads back with the same tags and steps."""
import numpy as np
import pytest


def test_torch_writer_event_files_read_back(tmp_path):
  pytest.importorskip('torch')
  from tensorboard.backend.event_processing import event_accumulator
  from jaxcnn.torch_writer import TorchTensorboardWriter
  w = TorchTensorboardWriter(str(tmp_path))
  for step in (1, 2):
    w.write_scalars(step, {'loss': 1.0 / step, 'learning_rate': 0.1})
  w.write_images(2, {'inputs': np.zeros((2, 8, 8, 3), np.uint8)})
  w.write_histograms(2, {'act/local3': np.arange(10.0)})
  w.write_texts(2, {'config': 'x'})
  buckets = np.array([[0.0, 1.0, 3.0], [1.0, 2.0, 1.0]])  # on-device layout
  w.write_summaries(2, {'grad/conv1': buckets, 'sparsity/conv1': 0.25})
  w.close()
  acc = event_accumulator.EventAccumulator(
      str(tmp_path), size_guidance={'images': 0, 'histograms': 0})
  acc.Reload()
  tags = acc.Tags()
  assert set(tags['scalars']) == {'loss', 'learning_rate', 'sparsity/conv1'}
  assert [e.step for e in acc.Scalars('loss')] == [1, 2]
  assert [e.value for e in acc.Scalars('loss')] == [1.0, 0.5]
  assert 'act/local3' in tags['histograms']
  assert acc.Histograms('act/local3')[0].histogram_value.num == 10
  assert tags['images'] == ['inputs']
  h = acc.Histograms('grad/conv1')[0]
  assert (h.step, h.histogram_value.num, h.histogram_value.max) == (2, 4, 2)
  assert list(h.histogram_value.bucket) == [3.0, 1.0]
  assert acc.Scalars('sparsity/conv1')[0].value == 0.25
