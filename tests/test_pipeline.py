"""Host batching: determinism, fixed shapes, resume, shards, padded eval."""
import itertools

import numpy as np
import pytest

from jaxcnn.data import pipeline


def _data(n=50):
  return np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), np.arange(n) % 10


def test_epoch_covers_each_example_once_and_drops_remainder():
  x, y = _data(50)
  it = pipeline.train_batches(x, y, 16, seed=3)
  epoch = [next(it) for _ in range(3)]  # 50 // 16 = 3 batches per epoch
  seen = np.concatenate([b['image'].ravel() for b in epoch])
  assert len(set(seen.tolist())) == 48
  assert all(b['image'].shape == (16, 1, 1, 1) for b in epoch)
  nxt = next(it)['image'].ravel()  # epoch 2 reshuffles
  assert not np.array_equal(np.sort(nxt), np.sort(epoch[0]['image'].ravel())) \
      or not np.array_equal(nxt, epoch[0]['image'].ravel())


def test_same_seed_same_order_and_resume_mid_stream():
  x, y = _data(50)
  full = list(itertools.islice(pipeline.train_batches(x, y, 8, seed=1), 14))
  again = list(itertools.islice(pipeline.train_batches(x, y, 8, seed=1), 14))
  resumed = list(itertools.islice(
      pipeline.train_batches(x, y, 8, seed=1, start_step=9), 5))
  for a, b in zip(full, again):
    np.testing.assert_array_equal(a['image'], b['image'])
  for a, b in zip(full[9:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
  other = next(pipeline.train_batches(x, y, 8, seed=2))
  assert not np.array_equal(other['image'], full[0]['image'])


def test_process_shards_are_disjoint_and_cover_the_global_batch():
  x, y = _data(64)
  whole = next(pipeline.train_batches(x, y, 16, seed=0))
  parts = [next(pipeline.train_batches(x, y, 16, seed=0, process_index=i,
                                       process_count=4)) for i in range(4)]
  got = np.concatenate([p['image'].ravel() for p in parts])
  assert len(set(got.tolist())) == 16
  np.testing.assert_array_equal(np.sort(got), np.sort(whole['image'].ravel()))


def test_eval_batches_pad_and_mask_the_tail():
  x, y = _data(23)
  batches = list(pipeline.eval_batches(x, y, 10))
  assert [b['image'].shape[0] for b in batches] == [10, 10, 10]
  masks = np.concatenate([b['mask'] for b in batches])
  assert masks.sum() == 23 and masks[23:].sum() == 0
  seen = np.concatenate([b['image'].ravel()[b['mask'] > 0] for b in batches])
  np.testing.assert_array_equal(seen, np.arange(23))


def test_prefetch_preserves_order_and_reraises():
  out = list(pipeline.prefetch(iter(range(7)), lambda b: b * 2, size=2))
  assert out == [0, 2, 4, 6, 8, 10, 12]

  def broken():
    yield 1
    raise RuntimeError('disk gone')
  it = pipeline.prefetch(broken(), lambda b: b)
  assert next(it) == 1
  try:
    next(it)
    raise AssertionError('expected the producer error')
  except RuntimeError as e:
    assert 'disk gone' in str(e)


def test_train_rows_are_the_rows_of_train_batches():
  x = np.arange(50, dtype=np.uint8)[:, None]
  y = np.arange(50, dtype=np.int32)
  rows = itertools.islice(pipeline.train_row_batches(50, 8, seed=4,
                                                     start_step=5), 9)
  batches = itertools.islice(pipeline.train_batches(x, y, 8, seed=4,
                                                    start_step=5), 9)
  for r, b in zip(rows, batches):
    assert r['rows'].dtype == np.int32
    np.testing.assert_array_equal(x[r['rows']], b['image'])
    np.testing.assert_array_equal(y[r['rows']], b['label'])


def test_device_data_gathers_rows_and_refuses_oversized_splits(monkeypatch):
  from jaxcnn import parallel
  from jaxcnn.data import device_data
  x = np.arange(40, dtype=np.uint8).reshape(10, 2, 2, 1)
  y = np.arange(10, dtype=np.int32)
  repl = parallel.replicated(parallel.make_mesh())
  data = device_data.put(x, y, repl)
  got = device_data.gather(data, np.array([7, 0, 3], np.int32))
  np.testing.assert_array_equal(got['image'], x[[7, 0, 3]])
  np.testing.assert_array_equal(got['label'], [7, 0, 3])
  monkeypatch.setattr(device_data, 'MAX_BYTES', 32)
  with pytest.raises(ValueError, match='input.device_data=False'):
    device_data.put(x, y, repl)
