"""Deep Compression: canonical Huffman round trips (exact), the 'huffman'
storage encoding, and the three-stage pipeline end to end on a tiny MLP."""
import json
import os

import jax
import numpy as np
import pytest

from jaxcnn.compress import huffman, storage
from jaxcnn import runs


def test_huffman_round_trip_and_code_lengths():
  rng = np.random.default_rng(0)
  for n, alphabet in ((1, 1), (2, 2), (1000, 5), (20000, 64)):
    s = rng.geometric(0.3, n) % alphabet
    enc = huffman.encode(s, alphabet)
    np.testing.assert_array_equal(huffman.decode(enc, n), s)
  # Counts 1, 1, 2, 4: lengths 3, 3, 2, 1 and canonical codes 110, 111, 10, 0.
  lengths = huffman.code_lengths([1, 1, 2, 4])
  np.testing.assert_array_equal(lengths, [3, 3, 2, 1])
  np.testing.assert_array_equal(huffman.canonical_codes(lengths),
                                [0b110, 0b111, 0b10, 0b0])
  # Those counts, in the order 3 2 0 1 3 2 3 3: 0 10 110 111 0 10 0 0.
  enc = huffman.encode(np.array([3, 2, 0, 1, 3, 2, 3, 3]), 4)
  np.testing.assert_array_equal(enc['lengths'], [3, 3, 2, 1])
  np.testing.assert_array_equal(enc['bits'], [0b01011011, 0b10100000])
  # A geometric source costs no more than 1 bit above its entropy.
  s = rng.geometric(0.2, 50000) % 32
  p = np.bincount(s) / len(s)
  entropy = -np.sum(p[p > 0] * np.log2(p[p > 0])) * len(s) / 8
  assert entropy <= len(huffman.encode(s, 32)['bits']) <= entropy * 1.05
  # Skewed counts are flattened until the code fits MAX_LEN bits.
  assert huffman.code_lengths(2 ** np.arange(40)).max() <= huffman.MAX_LEN
  # One repeated symbol: no bits at all.
  enc = huffman.encode(np.full(100, 7), 10)
  assert enc['bits'].size == 0
  np.testing.assert_array_equal(huffman.decode(enc, 100), np.full(100, 7))


def test_huffman_leaf_encoding_is_exact_and_small(tmp_path):
  rng = np.random.default_rng(1)
  w = np.zeros((300, 100), np.float32)
  keep = rng.random(w.shape) < 0.08
  codebook = rng.normal(size=32).astype(np.float32)
  w[keep] = codebook[rng.integers(0, 32, keep.sum())]
  variables = {'params': {'fc': {'kernel': w,
                                 'bias': rng.normal(size=100).astype(
                                     np.float32)}}}
  sizes = {}
  for enc in ('auto', 'huffman'):
    path = str(tmp_path / f'{enc}.jxcz')
    sizes[enc] = storage.save(path, variables, {'model': 'x'}, enc, 8,
                              zlib_header=enc == 'huffman')['file']
    loaded, meta = storage.load(path)
    assert meta == {'model': 'x'}
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded)):
      np.testing.assert_array_equal(a, b)
      assert a.dtype == b.dtype
  # 'auto' picks the fixed-width sparse codebook; Huffman beats it.
  assert sizes['huffman'] < sizes['auto'] < w.nbytes / 10
  bits = huffman.stream_bits(huffman.encode_weights(w))
  assert bits['codebook_size'] == 32 and 4.0 < bits['index_bits_per_nonzero'] \
      <= 5.1


@pytest.fixture
def dense_run(tmp_path):
  """The pipeline's input: an MLP workdir on the digits as training leaves
  it (config.json + orbax checkpoint of random weights)."""
  from configs import quickstart
  from jaxcnn import models
  from tests.test_distill import np_params, write_workdir
  c = quickstart.get_config()
  c.model.name = 'mlp'
  c.model.hidden = (64,)
  c.input.resize = c.input.pad = c.input.crop = 0  # the raw 8x8 digits
  c.input.random_crop = False
  c.log_every_steps = c.checkpoint_every_steps = 3
  c.write_summaries = False
  d = str(tmp_path / 'dense')
  write_workdir(c, d, np_params(models.get_model('mlp', hidden=(64,)), 0), 40)
  return c, d


def test_pipeline_end_to_end_resumes_and_loads(dense_run, tmp_path):
  from jaxcnn import experiment, train
  from jaxcnn.compress import apply, compare
  from jaxcnn.data import augment, sources
  c, dense_dir = dense_run
  c.init_from = dense_dir
  c.compress.method = 'deep_compression'
  c.compress.prune.update(dict(sparsity=0.8, schedule='one_shot',
                               scope='global'))
  c.compress.kmeans.update(dict(bits_fc=3))
  c.compress.deep_compression.update(dict(prune_steps=3, quantize_steps=3))
  out = str(tmp_path / 'dc')
  res = runs.train(c, out)
  rep = json.load(open(os.path.join(out, 'compression_report.json')))
  assert rep['method'] == 'deep_compression'
  assert rep['roundtrip_identical_logits'] and rep['roundtrip_identical_weights']
  assert res['params']['precision@1'] == \
      rep['accuracy']['compressed_after_finetune']
  st = rep['stages']['total']
  assert st['bytes_dense'] > st['bytes_pruned'] > st['bytes_quantized'] > \
      st['bytes_huffman'] == os.path.getsize(os.path.join(out, 'model.jxcz'))
  # The loaded file: pruned (80% of kernels zero), <= 8 shared values per
  # kernel, and the same logits as stage 2's artifact.
  loaded, meta = storage.load(os.path.join(out, 'model.jxcz'))
  quant, _ = storage.load(os.path.join(out, '2_kmeans', 'model.jxcz'))
  k = loaded['params']['fc1']['kernel']
  assert np.mean(k == 0) >= 0.79 and len(np.unique(k[k != 0])) <= 8
  model = experiment.build_model(c)
  x = sources.load('digits').x_test[:50]
  fwd = jax.jit(lambda v, im: apply.apply(model, v, augment.preprocess_eval(
      im, augment.spec_from_config(c.input))))
  np.testing.assert_array_equal(fwd(loaded, x), fwd(quant, x))
  md = open(os.path.join(out, 'compression_report.md')).read()
  assert 'stage by stage' in md and 'bytes_huffman' in md
  # A rerun finds every stage finished: nothing is retrained or rewritten.
  paths = [os.path.join(out, f) for f in ('1_prune/model.jxcz',
                                          '2_kmeans/model.jxcz', 'model.jxcz')]
  mtimes = [os.path.getmtime(p) for p in paths]
  assert runs.train(c, out) == res
  assert [os.path.getmtime(p) for p in paths] == mtimes
  # The comparison table reads the reports of finished runs.
  table = compare.table([os.path.join(out, '1_prune'), out])
  assert '| 1_prune | prune | mlp |' in table
  assert f"{st['bytes_dense']:,} → {st['bytes_huffman']:,}" in table
