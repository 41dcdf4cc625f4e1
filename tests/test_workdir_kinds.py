"""Every kind of workdir jaxcnn produces is read back the way training left
it: --mode=eval_once (config from the workdir) reproduces the run's final
evaluation, and predict (a workdir, or the artifact file alone) predicts
with the same net.

Kinds: plain; compression fine-tunes (filter pruning, SVD,
XNOR with its wrapped model); distillation frozen and
joint; each Deep Compression stage (unstructured pruning, k-means) and its
final artifact."""
import json
import os

import numpy as np
import pytest

from jaxcnn import predict, runs
from jaxcnn.compress import __main__ as cli
from jaxcnn.data import sources
from jaxcnn.errors import ConfigError

METHODS = ('filter_prune', 'svd', 'xnor')


def _base():
  from configs import quickstart
  c = quickstart.get_config('smoke')
  c.write_summaries = False
  c.end_plots = False
  return c


@pytest.fixture(scope='module')
def kinds(tmp_path_factory):
  """{kind: workdir}, each made by the real entry points."""
  root = tmp_path_factory.mktemp('kinds')
  out = {'plain': str(root / 'plain')}
  runs.train(_base(), out['plain'])
  for m in METHODS:
    out[m] = str(root / m)
    assert cli.main(['--workdir', out['plain'], '--output', out[m],
                     '--method', m, '--epochs', '0.05']) == 0
  out['distill_frozen'] = str(root / 'frozen')
  assert cli.main(['--workdir', out['plain'], '--output',
                   out['distill_frozen'], '--method', 'distill', '--student',
                   'mlp_small', '--epochs', '0.05']) == 0
  joint = _base()
  joint.distill.mode = 'joint'
  joint.distill.teacher_model = 'mlp'
  out['distill_joint'] = str(root / 'joint')
  runs.train(joint, out['distill_joint'])
  dc = _base()
  dc.init_from = out['plain']
  dc.compress.method = 'deep_compression'
  dc.compress.deep_compression.update(dict(prune_steps=2, quantize_steps=2))
  out['deep_compression'] = str(root / 'dc')
  runs.train(dc, out['deep_compression'])
  out['dc_1_prune'] = os.path.join(out['deep_compression'], '1_prune')
  out['dc_2_kmeans'] = os.path.join(out['deep_compression'], '2_kmeans')
  return out


TRAINED = ('plain',) + METHODS + ('distill_frozen', 'distill_joint',
                                  'dc_1_prune', 'dc_2_kmeans')


@pytest.mark.parametrize('kind', TRAINED)
def test_eval_once_reproduces_the_final_evaluation(kinds, kind):
  d = kinds[kind]
  final = json.load(open(os.path.join(d, 'final_metrics.json')))
  got = runs.evaluate(d, None, once=True)  # no --config: the workdir's
  for w in final:
    if w == 'step':
      continue
    assert got[w]['precision@1'] == pytest.approx(
        final[w]['precision@1'], abs=1e-6), w
    assert got[w]['count'] == final[w]['count']


def test_eval_once_of_a_deep_compression_run_evaluates_its_artifact(kinds):
  d = kinds['deep_compression']
  rep = json.load(open(os.path.join(d, 'compression_report.json')))
  got = runs.evaluate(d, None, once=True)
  assert got['params']['precision@1'] == pytest.approx(
      rep['accuracy']['compressed_after_finetune'], abs=1e-9)


@pytest.fixture(scope='module')
def images():
  return sources.load('digits').x_test[:64]


@pytest.mark.parametrize('kind', TRAINED + ('deep_compression',))
def test_predict_reads_every_workdir_kind(kinds, kind, images):
  p = predict.Predictor(kinds[kind])
  probs = p.predict(images)
  assert probs.shape == (64, 10)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
  artifact = os.path.join(kinds[kind], 'model.jxcz')
  if os.path.exists(artifact) and not kind.startswith('distill'):
    # The artifact file alone predicts with the same net (it stores the
    # configured weights; quantized leaves may round differently).
    alone = predict.ArtifactPredictor(artifact).predict(images)
    agree = np.mean(alone.argmax(-1) == probs.argmax(-1))
    assert agree >= 0.95, (kind, agree)


def test_joint_distillation_predicts_with_the_student(kinds, images):
  """The checkpoint holds the pair; predict runs JointModel.__call__, the
  student, and eval_once its accuracy (the final evaluation's)."""
  p = predict.Predictor(kinds['distill_joint'])
  assert set(p.params) == {'student', 'teacher'}
  assert p.predict(images).shape == (64, 10)


def test_predict_cli_takes_an_artifact_file(kinds, tmp_path, capsys):
  from PIL import Image
  img = tmp_path / 'digit.png'
  Image.fromarray(images_of_digits()[0, :, :, 0]).save(img)
  for kind in ('svd', 'filter_prune', 'deep_compression'):
    path = os.path.join(kinds[kind], 'model.jxcz')
    assert predict.main(['--model', path, str(img)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f'{img}: ') and out.count('(') == 3


def images_of_digits():
  return sources.load('digits').x_test[:1]


def test_eval_refuses_a_config_that_disagrees_with_the_workdir(kinds):
  c = _base()
  c.optim.learning_rate = 0.5
  with pytest.raises(ConfigError, match='optim.learning_rate'):
    runs.evaluate(kinds['plain'], c, once=True)
  # Neutral fields may differ (and are used).
  c = _base()
  c.eval_batch_size = 60
  runs.evaluate(kinds['plain'], c, once=True)


def test_artifact_without_preprocessing_or_config_is_a_clear_error(
    kinds, tmp_path):
  """An artifact copied away from its workdir still runs: the file records
  its eval preprocessing (format since issue 17)."""
  import shutil
  lone = tmp_path / 'alone.jxcz'
  shutil.copy(os.path.join(kinds['svd'], 'model.jxcz'), lone)
  probs = predict.ArtifactPredictor(str(lone)).predict(images_of_digits())
  assert probs.shape == (1, 10)


@pytest.mark.parametrize('dropped', [('weights',), ('dataset', 'image_size'),
                                     ('dataset', 'on_bad_image')])
def test_a_workdir_from_before_a_field_existed_still_reopens_and_resumes(
    kinds, tmp_path, images, dropped):
  """config.json written before a field was declared: the field takes its
  default, reading agrees, and resuming under today's config is no change."""
  import shutil
  from jaxcnn import workdir as run_dir
  old = str(tmp_path / 'old')
  shutil.copytree(kinds['plain'], old)
  path = os.path.join(old, 'config.json')
  saved = json.load(open(path))
  node = saved
  for k in dropped[:-1]:
    node = node[k]
  del node[dropped[-1]]
  json.dump(saved, open(path, 'w'))
  assert predict.Predictor(old).predict(images).shape == (64, 10)
  run_dir.check_resume(old, run_dir.read_config(old), 4)  # no refusal
  assert run_dir.config_changes(saved, run_dir.read_config(old)) == []
