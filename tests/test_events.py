"""jaxcnn.events.EventWriter: TensorBoard event files without TensorFlow,
read back through TensorBoard's own EventAccumulator."""
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.util import tensor_util

from jaxcnn import events, metrics


def _read(logdir):
  acc = ea.EventAccumulator(str(logdir), size_guidance={ea.TENSORS: 0})
  acc.Reload()
  return acc


def _plugin(acc, tag):
  return acc.SummaryMetadata(tag).plugin_data.plugin_name


def _array(acc, tag, i=0):
  return tensor_util.make_ndarray(acc.Tensors(tag)[i].tensor_proto)


def test_scalars_keep_tags_steps_and_values(tmp_path):
  w = events.EventWriter(str(tmp_path))
  for step, loss in ((1, 2.5), (2, 1.25), (10, np.float64(0.5))):
    w.write_scalars(step, {'train/loss': loss, 'train/lr': np.float32(0.1)})
  w.write_summaries(3, {'sparsity/conv1': 0.25})  # 0-d, no metadata
  w.close()
  acc = _read(tmp_path)
  assert [e.step for e in acc.Tensors('train/loss')] == [1, 2, 10]
  assert [float(_array(acc, 'train/loss', i)) for i in range(3)] == [
      2.5, 1.25, 0.5]
  assert float(_array(acc, 'train/lr')) == pytest.approx(0.1)
  for tag in ('train/loss', 'train/lr', 'sparsity/conv1'):
    assert _plugin(acc, tag) == 'scalars', tag
  assert float(_array(acc, 'sparsity/conv1')) == 0.25


@pytest.mark.parametrize('shape,dtype', [
    ((1, 5, 7, 3), np.uint8), ((2, 4, 4, 1), np.float32),
    ((6, 8, 3), np.float64), ((1, 3, 2, 4), np.uint8)])
def test_images_round_trip_through_png(tmp_path, shape, dtype):
  rng = np.random.default_rng(0)
  x = (rng.integers(0, 256, shape).astype(np.uint8) if dtype == np.uint8
       else rng.uniform(-0.2, 1.2, shape).astype(dtype))
  w = events.EventWriter(str(tmp_path))
  w.write_images(4, {'input/augmented': x})
  w.close()
  acc = _read(tmp_path)
  assert _plugin(acc, 'input/augmented') == 'images'
  t = _array(acc, 'input/augmented')
  batch = x[None] if x.ndim == 3 else x
  n, h, wd, c = batch.shape
  assert (int(t[0]), int(t[1]), len(t)) == (wd, h, n + 2)
  want = batch if dtype == np.uint8 else np.round(
      np.clip(batch, 0, 1) * 255).astype(np.uint8)
  from PIL import Image
  import io
  for i in range(n):
    got = np.asarray(Image.open(io.BytesIO(t[2 + i])))
    np.testing.assert_array_equal(got.reshape(h, wd, c), want[i])


def test_histograms_texts_and_device_buckets(tmp_path):
  from tensorboard.plugins.histogram import metadata as hm
  w = events.EventWriter(str(tmp_path))
  w.write_histograms(2, {'act/local3': np.arange(10.0),
                         'act/nan': np.array([np.nan, 1.0, np.inf, 3.0]),
                         'act/empty': np.zeros((0,))},
                     num_buckets={'act/local3': 5})
  w.write_texts(2, {'config': 'lr=0.1\nbatch=128'})
  buckets = np.array([[0.0, 1.0, 3.0], [1.0, 2.0, 1.0]])  # on-device layout
  w.write_summaries(2, {'grad/conv1': buckets}, metadata={
      'grad/conv1': hm.create_summary_metadata('grad/conv1', '')})
  w.close()
  acc = _read(tmp_path)
  h = _array(acc, 'act/local3')
  assert h.shape == (5, 3) and h[:, 2].sum() == 10
  assert (h[0, 0], h[-1, 1]) == (0.0, 9.0)
  assert _array(acc, 'act/nan')[:, 2].sum() == 2  # non-finite dropped
  assert _array(acc, 'act/empty').shape == (0, 3)
  np.testing.assert_array_equal(_array(acc, 'grad/conv1'), buckets)
  for tag in ('act/local3', 'grad/conv1'):
    assert _plugin(acc, tag) == 'histograms'
  assert _plugin(acc, 'config') == 'text'
  assert _array(acc, 'config').item() == b'lr=0.1\nbatch=128'


@pytest.mark.parametrize('bad', [np.zeros((4, 4)), np.zeros((1, 4, 4, 2)),
                                 np.zeros((2, 1, 4, 4, 3))])
def test_bad_image_shapes_are_refused(tmp_path, bad):
  w = events.EventWriter(str(tmp_path))
  with pytest.raises(ValueError, match='image'):
    w.write_images(0, {'x': bad})
  w.close()


def test_training_writer_imports_no_tensorflow(tmp_path):
  """The writer a training run gets does not pull TensorFlow in (3.6 s and
  540 MB per process with clu's writer)."""
  code = (
      'import sys\n'
      'from jaxcnn import metrics\n'
      f'w = metrics.make_writer({str(tmp_path)!r}, True)\n'
      'w.write_scalars(1, {"a": 1.0}); w.close()\n'
      'print(type(w).__name__, "tensorflow" in sys.modules)\n')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True).stdout.split()
  assert out == ['EventWriter', 'False']
  assert _read(tmp_path).Tags()['tensors'] == ['a']


def test_log_only_writer_when_disabled_or_not_main(tmp_path):
  for is_main, enabled in ((False, True), (True, False)):
    w = metrics.make_writer(str(tmp_path), is_main, enabled)
    assert not isinstance(w, events.EventWriter)
    w.write_scalars(1, {'a': 1.0})
    w.close()
  assert not list(tmp_path.iterdir())
