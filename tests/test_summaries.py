"""TensorBoard summaries (jaxcnn/summaries.py), metrics.jsonl and plots."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import plots, steps, summaries

from jaxcnn import runs
from jaxcnn.compress import base
from jaxcnn.compress import plugins as compress_plugins
from jaxcnn.config_base import base_config
from jaxcnn.data import augment
from jaxcnn.state import TrainState


def _png(path):
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n', path
  return path


def test_train_run_writes_event_tags_metrics_and_plots(tiny_config, tmp_path):
  from tensorboard.backend.event_processing import event_accumulator as ea
  from jaxcnn import train
  c = tiny_config
  c.num_train_steps = 4
  c.log_every_steps = 2
  c.eval_every_steps = 4
  c.checkpoint_every_steps = 4
  c.summary_every_steps = 2
  c.end_plots = True
  wd = str(tmp_path)
  runs.train(c, wd)

  acc = ea.EventAccumulator(wd, size_guidance={ea.TENSORS: 0})
  acc.Reload()
  tags = set(acc.Tags()['tensors'])
  steps = lambda tag: [e.step for e in acc.Tensors(tag)]
  for tag in ('train/loss', 'train/loss_ema', 'train/learning_rate',
              'train/precision@1', 'train/examples_per_sec'):
    assert steps(tag) == [2, 4], tag
  assert steps('eval_params/precision@1') == [4]
  # Summary steps: each layer's activations, every param's weights/grads.
  expected = ['input/augmented', 'filters/C1', 'summary/loss',
              'summary/grad_norm']
  for layer in ('C1', 'C3', 'C5', 'F6', 'output'):
    expected += [f'activations/{layer}', f'sparsity/activations/{layer}']
  for leaf in ('C1/kernel', 'C1/bias', 'F6/kernel', 'output/kernel'):
    for kind in ('weights', 'gradients'):
      expected += [f'{kind}/{leaf}', f'sparsity/{kind}/{leaf}']
  for tag in expected:
    assert tag in tags, tag
    assert steps(tag) == [2, 4], tag
  assert acc.SummaryMetadata('activations/F6').plugin_data.plugin_name == \
      'histograms'
  assert acc.SummaryMetadata('input/augmented').plugin_data.plugin_name == \
      'images'
  hist = acc.Tensors('weights/F6/kernel')[0].tensor_proto
  assert [d.size for d in hist.tensor_shape.dim] == [30, 3]

  recs = plots.read_metrics(wd)
  assert [(r['split'], r['step']) for r in recs] == [
      ('train', 2), ('train', 4), ('eval_params', 4), ('eval_ema', 4)]
  # Moving average of the per-step losses, decay 0.9, seeded by step 1.
  assert recs[0]['loss_ema'] != recs[0]['loss']
  for name in ('curves.png', 'confusion_matrix.png', 'filters.png'):
    _png(os.path.join(wd, name))
  pc = json.load(open(os.path.join(wd, 'per_class.json')))
  cm = np.array(pc['confusion'])
  assert cm.sum() == 360  # every held-out digit once
  final = json.load(open(os.path.join(wd, 'final_metrics.json')))
  used = 'ema' if pc['weights'] == 'EMA' else 'params'  # the plot's weights
  assert np.trace(cm) / 360 == pytest.approx(
      final[used]['precision@1'], abs=1e-6)


class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.relu(nn.Dense(3, name='hidden')(x.reshape((x.shape[0], -1))))
    return nn.Dense(2, name='out')(x)


class _RoundTo(base.Method):
  """A codebook-like method: the forward uses weights rounded to 0.5."""
  name = 'round_test'

  def pre_forward(self, params, state):
    del state
    return jax.tree_util.tree_map_with_path(
        lambda p, w: jnp.round(w * 2) / 2 if p[-1].key == 'kernel' else w,
        params)


def test_summary_step_exact_values():
  params = {'hidden': {'kernel': jnp.array([[1., -1., 0.], [0.3, 0., 2.]]),
                       'bias': jnp.zeros(3)},
            'out': {'kernel': jnp.array([[1., 0.], [0., 1.], [1., 1.]]),
                    'bias': jnp.zeros(2)}}
  method = _RoundTo(None)
  tx = method.wrap_tx(optax.sgd(0.1))
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     batch_stats={}, opt_state=tx.init(params),
                     ema_params={}, rng=jax.random.key_data(jax.random.key(0)))
  # 2x1x1 images -> flattened 2 features; unit normalisation divides by 255.
  batch = {'image': np.array([[[[255], [0]]], [[[0], [255]]]], np.uint8),
           'label': np.array([0, 1], np.int32)}
  plugin = compress_plugins.CompressPlugin(base_config())
  plugin.method = method  # the test's method, registered nowhere
  fn = jax.jit(lambda s, b: summaries.summary_step(
      s, b, model=_Tiny(), plugins=(plugin,),
      options=steps.StepOptions(input_spec=augment.InputSpec()),
      l2_mask=None, conv_path=None))
  out = jax.device_get(fn(state, batch))
  sc = out['scalars']
  # hidden pre-activations: x=[1,0] -> [1,-1,0]; x=[0,1] -> [0.5,0,2] with
  # the rounded kernel (0.3 -> 0.5): 3 of 6 values are <= 0.
  assert sc['sparsity/activations/hidden'] == pytest.approx(3 / 6)
  assert sc['sparsity/weights/hidden/kernel'] == pytest.approx(2 / 6)
  assert sc['compress/distinct_values/hidden/kernel'] == 5  # -1,0,.5,1,2
  assert sc['compress/bits_per_weight/hidden/kernel'] == 3  # ceil(log2 5)
  assert sc['compress/distinct_values/out/kernel'] == 2
  assert sc['compress/bits_per_weight/out/kernel'] == 1
  assert sc['compress/sparsity/out/kernel'] == pytest.approx(2 / 6)
  h = out['hists']['weights/hidden/kernel']
  assert h.shape == (30, 3) and h[:, 2].sum() == 6
  assert h[0, 0] == -1.0 and h[-1, 1] == 2.0
  # No gradient flows through jnp.round: the latent kernel's grads are 0.
  assert sc['sparsity/gradients/hidden/kernel'] == 1.0
  assert sc['sparsity/gradients/out/bias'] == 0.0
  assert out['images'].shape == (2, 1, 2, 1)


def test_histogram_of_a_constant_and_grids():
  h = np.asarray(summaries.histogram(jnp.full((4, 4), 3.0), 5))
  assert h[:, 2].sum() == 16 and h[0, 0] == 3.0
  grid = summaries.tile(np.zeros((5, 2, 3, 1)), cols=3, pad=1)
  assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
  imgs = summaries.filter_images(np.arange(2 * 2 * 3 * 4, dtype=np.float32
                                           ).reshape(2, 2, 3, 4))
  assert imgs.shape == (4, 2, 2, 3)
  assert imgs.min() == 0.0 and imgs.max() == 1.0


def test_plots_write_pngs(tmp_path):
  cm = plots.confusion(np.array([0, 0, 1, 2, 2, 2]),
                       np.array([0, 1, 1, 2, 2, 0]), 3)
  np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
  pc = plots.per_class(cm)
  np.testing.assert_allclose(pc['precision'], [0.5, 0.5, 1.0])
  np.testing.assert_allclose(pc['recall'], [0.5, 1.0, 2 / 3])
  d = str(tmp_path)
  _png(plots.confusion_matrix(cm, ['a', 'b', 'c'], f'{d}/cm.png'))
  _png(plots.lrn_response(f'{d}/lrn.png'))
  acts = np.maximum(np.random.default_rng(0).normal(size=(6, 6, 8)), 0)
  _png(plots.lrn_comparison(acts, f'{d}/lrn_cmp.png', channels=2))
  w = {'conv1/kernel': np.linspace(-1, 1, 50)}
  _png(plots.weight_histograms(
      w, {'conv1/kernel': np.where(np.abs(w['conv1/kernel']) < 0.5, 0,
                                   np.sign(w['conv1/kernel']) * 0.75)},
      f'{d}/wh.png', centroids={'conv1/kernel': [-0.75, 0.75]}))
  _png(plots.tradeoff([{'name': 'dense', 'ratio': 1, 'accuracy': 0.9},
                       {'name': 'prune', 'ratio': 8, 'accuracy': 0.88}],
                      f'{d}/t.png'))
  with open(f'{d}/metrics.jsonl', 'w') as f:
    for s in (1, 2):  # a resumed run repeats step 2: the last record wins
      f.write(json.dumps({'step': s, 'split': 'train', 'loss': 1.0 / s,
                          'loss_ema': 1.0, 'precision@1': 0.5,
                          'learning_rate': 0.1}) + '\n')
    f.write(json.dumps({'step': 2, 'split': 'train', 'loss': 0.25,
                        'loss_ema': 1.0, 'precision@1': 0.5,
                        'learning_rate': 0.1}) + '\n')
    f.write(json.dumps({'step': 2, 'split': 'eval_params', 'loss': 0.3,
                        'precision@1': 0.6}) + '\n')
  recs = plots.read_metrics(d)
  assert [r['loss'] for r in recs if r['split'] == 'train'] == [1.0, 0.25]
  _png(plots.training_curves(d))
  with pytest.raises(FileNotFoundError, match='metrics.jsonl'):
    plots.read_metrics(f'{d}/nowhere')
