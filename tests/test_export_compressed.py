"""Exporting compression workdirs (jaxcnn/export/families.py, issue #20) and
compress.artifact_model, on real tiny artifacts: one 120-step quickstart
LeNet, then one-step `python -m jaxcnn.compress` runs of several families
(built once per module). Each export runs in its runtime (the LiteRT
interpreter, jax.export.deserialize) and is compared with jaxcnn's own
artifact forward pass; unsupported combinations give one-line errors.
"""
import json
import os

import numpy as np
import pytest

from jaxcnn import runs as runs_lib
from jaxcnn import workdir as run_dir
from jaxcnn.compress import __main__ as compress_cli
from jaxcnn.compress import artifact_model, storage
from jaxcnn.errors import CheckpointError
from jaxcnn.export import __main__ as export_cli
from jaxcnn.export import convert, families, sidecar_path
from jaxcnn.models.binary import binary_weights

# Real one-step `python -m jaxcnn.compress` runs; the prune, kmeans and bwn
# artifacts are made by hand from the dense baseline (_hand_made), which
# saves three runs (benchmarks/export_bench.py measures real ones).
FAMILIES = ('svd', 'filter_prune', 'int8', 'distill')
HAND_MADE = ('prune', 'kmeans', 'bwn')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """{'plain': workdir, method: compression workdir}."""
  from configs import quickstart
  root = tmp_path_factory.mktemp('export_compressed')
  c = quickstart.get_config('smoke')
  c.num_train_steps = 120
  c.checkpoint_every_steps = c.eval_every_steps = c.log_every_steps = 120
  out = {'plain': str(root / 'plain')}
  runs_lib.train(c, out['plain'])
  for m in FAMILIES:
    out[m] = str(root / m)
    extra = ['--student', 'mlp_small'] if m == 'distill' else []
    assert compress_cli.main(['--workdir', out['plain'], '--method', m,
                              '--output', out[m], '--epochs', '0.05',
                              '--set', 'end_plots=False',
                              '--set', 'ema_decay=0.0',
                              *extra]) == 0, m
  for m in HAND_MADE:
    out[m] = _hand_made(m, out['svd'], str(root / m))
  return out


def _hand_made(method: str, svd: str, dest: str) -> str:
  """A compression workdir without fine-tuning: the dense baseline beside
  the svd artifact with C3/C5/F6 pruned to 10% (prune), shared to 16
  values (kmeans) or alpha * sign(w) per filter (bwn), stored with the
  method's encoding."""
  os.makedirs(dest)
  variables, meta = storage.load(os.path.join(svd, 'dense.jxcz'))
  for name in ('C3', 'C5', 'F6'):
    p = variables['params'][name]
    w = np.asarray(p['kernel'])
    if method == 'prune':
      w = np.where(np.abs(w) >= np.quantile(np.abs(w), 0.9), w, 0)
    elif method == 'kmeans':
      edges = np.quantile(w, np.linspace(0, 1, 17))
      idx = np.clip(np.searchsorted(edges, w) - 1, 0, 15)
      w = np.array([w[idx == k].mean() if np.any(idx == k) else 0
                    for k in range(16)], np.float32)[idx]
    else:
      w = np.asarray(binary_weights(p['kernel'], True))
    p['kernel'] = w.astype(np.float32)
  encoding = {'prune': 'relative', 'kmeans': 'auto', 'bwn': 'binary'}[method]
  storage.save(os.path.join(dest, 'model.jxcz'), variables,
               {**meta, 'method': method}, encoding)
  with open(os.path.join(svd, 'config.json')) as f:
    config = json.load(f)
  config['compress']['method'] = method
  with open(os.path.join(dest, 'config.json'), 'w') as f:
    json.dump(config, f)
  return dest


@pytest.fixture(scope='module')
def artifacts(runs):
  return {m: artifact_model.load(os.path.join(runs[m], 'model.jxcz'))
          for m in (*FAMILIES, *HAND_MADE)}


def _litert(path, images):
  """The plain LiteRT interpreter, one image per call (batch-1 file)."""
  from ai_edge_litert.interpreter import Interpreter, OpResolverType
  it = Interpreter(model_path=path, num_threads=1)
  inp, out = it.get_input_details()[0], it.get_output_details()[0]
  assert inp['dtype'] == np.uint8 and out['dtype'] == np.float32
  it.allocate_tensors()
  probs = []
  for i in range(len(images)):
    it.set_tensor(inp['index'], images[i:i + 1])
    it.invoke()
    probs.append(it.get_tensor(out['index']).copy())
  # Without XNNPACK the constant weights stay readable.
  plain = Interpreter(model_path=path, experimental_op_resolver_type=
                      OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  plain.allocate_tensors()
  return np.concatenate(probs), plain


def _weights(it, ops=('CONV_2D', 'FULLY_CONNECTED')):
  return [it.get_tensor(op['inputs'][1]) for op in it._get_ops_details()
          if op['op_name'] in ops]


def test_artifact_model_reproduces_the_compression_report(runs, artifacts,
                                                          digits):
  """Every family's artifact through artifact_model scores what the
  compression run measured on the same test set."""
  for m in FAMILIES:
    am = artifacts[m]
    with open(os.path.join(runs[m], 'compression_report.json')) as f:
      want = json.load(f)['accuracy']['compressed_after_finetune']
    probs = am.predict(digits.x_test)
    assert probs.dtype == np.float32 and probs.shape == (360, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.mean(probs.argmax(1) == digits.y_test) == pytest.approx(want), m
    assert am.method == m and am.info.class_names[0] == '0'


def test_artifact_model_needs_its_preprocessing(runs, tmp_path):
  """meta['input'] (newer artifacts), else the config passed, else the
  config.json beside the file; without any: a one-line CheckpointError."""
  variables, meta = storage.load(os.path.join(runs['svd'], 'model.jxcz'))
  lone = str(tmp_path / 'model.jxcz')
  storage.save(lone, variables, {k: v for k, v in meta.items()
                                 if k != 'input'})
  with pytest.raises(CheckpointError, match='config.json beside it') as e:
    artifact_model.load(lone)
  assert '\n' not in str(e.value)
  config = run_dir.read_config(runs['svd'])
  assert artifact_model.load(lone, config).input_spec.crop == 32
  if 'input' in meta:  # recorded: the file runs on its own
    storage.save(lone, variables, meta)
    assert artifact_model.load(lone).input_spec.crop == 32


@pytest.mark.parametrize('method', ['svd', 'filter_prune', 'prune', 'kmeans',
                                    'distill', 'bwn'])
def test_float_families_match_the_artifact_in_litert(runs, artifacts, digits,
                                                     method, tmp_path):
  path = str(tmp_path / f'{method}.tflite')
  meta = convert.export(runs[method], 'tflite', path)
  probs, it = _litert(path, digits.x_test)
  np.testing.assert_allclose(probs, artifacts[method].predict(digits.x_test),
                             atol=1e-4)
  comp = meta['compression']
  assert meta['source'] == 'artifact' and comp['method'] == method
  assert comp['mapping'] == families.MAPPING[method][0]
  shapes = [w.shape for w in _weights(it)]
  if method == 'svd':  # F6 (120 -> 84) became two matmuls through rank r
    u = artifacts['svd'].variables['params']['F6']['u_kernel']
    assert (u.shape[1], 120) in shapes and (84, u.shape[1]) in shapes
  if method == 'filter_prune':  # the compact net: fewer C3 filters
    kept = artifacts[method].variables['params']['C3']['kernel'].shape[-1]
    assert kept < 16 and any(s[0] == kept and len(s) == 4 for s in shapes)
  if method == 'bwn':
    assert 'Larq' in comp['note']


def test_int8_stablehlo_is_jaxcnns_integer_path(runs, artifacts, digits,
                                                tmp_path):
  import jax
  path = str(tmp_path / 'int8.stablehlo')
  meta = convert.export(runs['int8'], 'stablehlo', path)
  with open(path, 'rb') as f:
    exp = jax.export.deserialize(bytearray(f.read()))
  got = np.asarray(exp.call(digits.x_test))
  want = artifacts['int8'].predict(digits.x_test)
  # The file holds XLA's convolution, the predictor oneDNN's on CPU: float
  # rounding may move an activation across an int8 step in a few images
  # (7 of 3600 values, one image, on an AVX2-only VM). Any other change of
  # the integer path moves many.
  off = np.abs(got - want).max(axis=1) > 1e-5
  assert off.mean() <= 0.005, off.sum()
  assert np.abs(got - want).max() < 0.05
  assert (got.argmax(1) == want.argmax(1)).mean() >= 0.995
  assert "jaxcnn's own" in meta['compression']['int8_scales']


def test_int8_litert_is_full_integer_with_jaxcnns_weight_codes(
    runs, artifacts, digits, tmp_path):
  path = str(tmp_path / 'int8.tflite')
  meta = convert.export(runs['int8'], 'tflite', path, quantize='int8',
                        calib_images=64)
  probs, it = _litert(path, digits.x_test)
  ref = artifacts['int8'].predict(digits.x_test)
  assert np.mean(probs.argmax(1) == ref.argmax(1)) >= 0.9
  assert 'converter' in meta['compression']['int8_scales']
  codes = {w.tobytes() for w in _weights(it) if w.dtype == np.int8}
  for name in ('C3', 'C5'):  # OHWI in LiteRT, HWIO in jaxcnn
    q = artifacts['int8'].variables['params'][name]['kernel_q']
    assert q.transpose(3, 0, 1, 2).tobytes() in codes, name
  q = artifacts['int8'].variables['params']['F6']['kernel_q']
  assert q.T.tobytes() in codes


def _cli_error(capsys, *argv):
  code = export_cli.main(list(argv))
  err = capsys.readouterr().err
  assert code == 2, err
  assert err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
  return err


def test_unsupported_combinations_are_one_line_errors(runs, tmp_path,
                                                      capsys):
  out = str(tmp_path / 'm.tflite')
  err = _cli_error(capsys, '--workdir', runs['int8'], '--format', 'tflite',
                   '--output', out)
  assert 'supported: stablehlo --quantize none; tflite --quantize int8' in err
  err = _cli_error(capsys, '--workdir', runs['prune'], '--format', 'tflite',
                   '--quantize', 'int8', '--sparse', '--output', out)
  assert '--quantize none only' in err
  with open(os.path.join(runs['svd'], 'compression_report.json')) as f:
    used = json.load(f)['weights_used']
  other = {'ema': 'params', 'params': 'ema'}[used]
  err = _cli_error(capsys, '--workdir', runs['svd'], '--format', 'tflite',
                   '--weights', other, '--output', out)
  assert f'holds the {used} weights' in err
  with open(os.path.join(runs['svd'], 'config.json')) as f:
    config = json.load(f)
  odd = tmp_path / 'odd'
  odd.mkdir()
  config['compress']['method'] = 'magic'
  (odd / 'config.json').write_text(json.dumps(config))
  err = _cli_error(capsys, '--workdir', str(odd), '--format', 'tflite',
                   '--output', out)
  assert "'magic' has no export mapping" in err and 'svd' in err
  config['compress']['method'] = 'svd'
  (odd / 'config.json').write_text(json.dumps(config))
  err = _cli_error(capsys, '--workdir', str(odd), '--format', 'tflite',
                   '--output', out)
  assert 'no model.jxcz in' in err
  assert not os.path.exists(out)


def test_binary_export_says_what_it_is(runs, tmp_path, capsys):
  out = str(tmp_path / 'bwn.tflite')
  assert export_cli.main(['--workdir', runs['bwn'], '--format', 'tflite',
                          '--output', out]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[-1].startswith('note: stock LiteRT cannot run bit-packed')
  with open(sidecar_path(out)) as f:
    assert 'float +-alpha' in json.load(f)['compression']['mapping']
