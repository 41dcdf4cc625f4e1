"""A compression run is an ordinary run with init_from + compress: end to
end on the embedded digits, including resume of the method state."""
import json
import os
import shutil

import chex
import jax
import numpy as np

from jaxcnn import checkpoint, experiment, parallel, train

from jaxcnn import runs
from jaxcnn.compress import session, storage


def test_prune_run_writes_report_and_resumes_masks(tiny_config, tmp_path):
  dense_dir, comp_dir = str(tmp_path / 'dense'), str(tmp_path / 'prune')
  tiny_config.write_summaries = False
  runs.train(tiny_config, dense_dir)
  c = tiny_config
  c.init_from = dense_dir
  c.compress.method = 'prune'
  c.compress.prune.update(dict(sparsity=0.75, schedule='gradual',
                               end_step=4, frequency=2, scope='global'))
  runs.train(c, comp_dir)
  rep = json.load(open(os.path.join(comp_dir, 'compression_report.json')))
  assert rep['roundtrip_identical_logits']
  assert rep['max_abs_diff_vs_training_model'] == 0.0
  loaded, _ = storage.load(os.path.join(comp_dir, 'model.jxcz'))
  zeros = sum(int(np.sum(v['kernel'] == 0)) for v in loaded['params'].values())
  assert zeros == int(0.75 * 61470)  # LeNet-5's kernels, the global target
  assert rep['total']['bytes_compressed'] < 0.5 * rep['total']['bytes_dense']
  assert os.path.getsize(os.path.join(comp_dir, 'model.jxcz')) == \
      rep['total']['bytes_compressed']
  for f in ('compression_report.md', 'accuracy_vs_compression.png'):
    assert os.path.getsize(os.path.join(comp_dir, f)) > 0

  # Masks live in opt_state, so the checkpoint restores them.
  model = experiment.build_model(c)
  mesh = parallel.make_mesh()
  p = experiment.plan(c, 1000)
  tx, schedule = experiment.make_optimizer(c, model, p)
  run = session.start(c, model, schedule,
                      experiment.init_state(c, model, tx, mesh), mesh)
  ckpt = checkpoint.Checkpointer(os.path.join(comp_dir, 'checkpoints'),
                                 async_save=False)
  state, step = ckpt.restore_latest(run.state)
  ckpt.close()
  assert step == 6
  masks = state.opt_state.method['masks']
  chex.assert_trees_all_equal(
      jax.tree.map(lambda m, w: np.asarray(w == 0) if m.ndim else m,
                   masks, state.params),
      jax.tree.map(lambda m: np.asarray(m == 0) if m.ndim else m, masks))
  # Resume from step 3: same final params as the straight run.
  shutil.rmtree(os.path.join(comp_dir, 'checkpoints', '6'))
  runs.train(c, comp_dir)
  ckpt = checkpoint.Checkpointer(os.path.join(comp_dir, 'checkpoints'),
                                 async_save=False)
  resumed, _ = ckpt.restore_latest(run.state)
  ckpt.close()
  chex.assert_trees_all_close(resumed.params, state.params, atol=1e-6)

  # --mode=eval restores the compression run's own checkpoint (masks in
  # opt_state) without the dense checkpoint it started from.
  from jaxcnn import evaluate
  shutil.rmtree(dense_dir)
  results = runs.evaluate(comp_dir, c, once=True)
  final = json.load(open(os.path.join(comp_dir, 'final_metrics.json')))
  assert results['params']['precision@1'] == final['params']['precision@1']
