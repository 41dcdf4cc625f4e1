"""Deployment export (jaxcnn/export, issue #20): every format and
quantization of a quickstart LeNet, each run outside jaxcnn's model code
(jax.export.deserialize, the LiteRT interpreter) and compared with jaxcnn's
own Predictor; int8 calibrates on real training images; bad inputs give
one-line errors with exit status 2.

One short quickstart run (embedded digits, 120 steps: enough for confident
predictions, so int8's top-1 agreement means something) is trained and
exported once per module.
"""
import json
import os
import shutil

import numpy as np
import pytest

from jaxcnn.export import __main__ as export_cli
from jaxcnn.export import ExportError, convert, runtime, sidecar_path
from jaxcnn import runs

# (format, quantize, batch): StableHLO with a symbolic batch, LiteRT at its
# default fixed batch 1.
VARIANTS = [('stablehlo', 'none', 0), ('tflite', 'none', 1),
            ('tflite', 'fp16', 1), ('tflite', 'int8', 1)]


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  from configs import quickstart
  from jaxcnn import train
  c = quickstart.get_config('smoke')
  c.num_train_steps = 120
  c.checkpoint_every_steps = c.eval_every_steps = c.log_every_steps = 120
  w = str(tmp_path_factory.mktemp('export') / 'run')
  runs.train(c, w)
  return w


@pytest.fixture(scope='module')
def reference(workdir, digits):
  """jaxcnn's own predictions on the 360 test digits."""
  from jaxcnn import predict
  return predict.Predictor(workdir).predict(digits.x_test)


@pytest.fixture(scope='module')
def exported(workdir):
  """{(format, quantize, batch): path}; also the int8 calibration batches
  the converter actually consumed."""
  out, seen = {}, []
  real = convert._representative

  def spy(images, batch):
    gen = real(images, batch)
    def recording():
      for b in gen():
        seen.append(b[0])
        yield b
    return recording
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(convert, '_representative', spy)
    for fmt, q, batch in VARIANTS:
      path = os.path.join(os.path.dirname(workdir), f'm_{q}_{batch}.{fmt}')
      convert.export(workdir, fmt, path, quantize=q, batch=batch,
                     calib_images=64)
      out[fmt, q, batch] = path
  out['calibration'] = seen
  return out


def _litert(path, images, threads=1):
  """The plain LiteRT interpreter, as an app would use it."""
  from ai_edge_litert.interpreter import Interpreter
  it = Interpreter(model_path=path, num_threads=threads)
  inp, out = it.get_input_details()[0], it.get_output_details()[0]
  assert inp['dtype'] == np.uint8 and out['dtype'] == np.float32
  fixed = inp['shape_signature'][0] > 0
  chunks = ([images[i:i + 1] for i in range(len(images))] if fixed else
            [images])
  probs = []
  for x in chunks:
    if not fixed:
      it.resize_tensor_input(inp['index'], x.shape)
    it.allocate_tensors()
    it.set_tensor(inp['index'], x)
    it.invoke()
    probs.append(it.get_tensor(out['index']).copy())
  return np.concatenate(probs), it


def test_stablehlo_runs_from_the_file_alone(exported, digits, reference):
  import jax
  with open(exported['stablehlo', 'none', 0], 'rb') as f:
    exp = jax.export.deserialize(bytearray(f.read()))
  assert not isinstance(exp.in_avals[0].shape[0], int)  # symbolic batch
  assert str(exp.in_avals[0].dtype) == 'uint8'
  assert set(exp.platforms) == {'cpu', 'cuda'}
  probs = np.asarray(exp.call(digits.x_test))
  np.testing.assert_allclose(probs, reference, atol=1e-5)
  # Another batch size through the same file.
  np.testing.assert_allclose(np.asarray(exp.call(digits.x_test[:7])),
                             reference[:7], atol=1e-5)


@pytest.mark.parametrize('q,atol', [('none', 1e-5), ('fp16', 5e-3)])
def test_litert_float_matches_jaxcnn(exported, digits, reference, q, atol):
  probs, _ = _litert(exported['tflite', q, 1], digits.x_test)
  np.testing.assert_allclose(probs, reference, atol=atol)


def test_litert_symbolic_batch_converts_or_says_why(workdir, digits,
                                                    reference, tmp_path):
  """A symbolic LiteRT batch converts unless the preprocessing lowers to
  an op the converter lacks (central_crop's gather, see docs/export.md);
  then the error is one line naming the fix."""
  path = str(tmp_path / 'dynamic.tflite')
  try:
    convert.export(workdir, 'tflite', path, batch=0)
  except ExportError as e:
    assert 'a fixed --batch N' in str(e) and '\n' not in str(e), e
    os.remove(str(e).rsplit('converter log: ', 1)[1].rstrip(')'))
    return
  probs, _ = _litert(path, digits.x_test)  # resized to 360 in one call
  np.testing.assert_allclose(probs, reference, atol=1e-5)


def test_litert_int8_is_full_integer_and_agrees(exported, digits, reference):
  path = exported['tflite', 'int8', 1]
  probs, it = _litert(path, digits.x_test)
  agree = np.mean(probs.argmax(1) == reference.argmax(1))
  assert agree >= 0.9, agree
  tensors = {t['index']: t for t in it.get_tensor_details()}
  heavy = [op for op in it._get_ops_details()
           if op['op_name'] in ('CONV_2D', 'DEPTHWISE_CONV_2D',
                                'FULLY_CONNECTED')]
  assert heavy
  for op in heavy:  # int8 weights and activations, no float kernels
    dtypes = {np.dtype(tensors[i]['dtype']).name for i in op['inputs'][:2]}
    assert dtypes == {'int8'}, (op['op_name'], dtypes)
  # Its size: about a quarter of the fp32 file.
  assert os.path.getsize(path) < 0.4 * os.path.getsize(
      exported['tflite', 'none', 1])


def test_int8_calibrates_on_real_training_images(exported, digits):
  seen = exported['calibration']
  assert seen and all(b.dtype == np.uint8 for b in seen)
  train_rows = {x.tobytes() for x in digits.x_train}
  assert all(x.tobytes() in train_rows for b in seen for x in b)
  with open(sidecar_path(exported['tflite', 'int8', 1])) as f:
    meta = json.load(f)
  assert meta['calibration'] == {'images': 64, 'split': 'train', 'seed': 0}
  assert meta['input']['dtype'] == 'uint8' and meta['quantize'] == 'int8'


def test_predict_cli_runs_exported_files(exported, workdir, digits, tmp_path,
                                         capsys):
  from PIL import Image
  from jaxcnn import predict
  img = tmp_path / 'digit.png'
  Image.fromarray(digits.x_test[0, ..., 0]).save(img)
  assert predict.main(['--workdir', workdir, str(img)]) == 0
  want = capsys.readouterr().out.split(': ')[1].split(' (')[0]
  for key in [('stablehlo', 'none', 0), ('tflite', 'none', 1),
              ('tflite', 'int8', 1)]:
    assert predict.main(['--model', exported[key], str(img)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f'{img}: {want} ('), (key, line)


def test_predict_model_checks_its_sidecar(exported, tmp_path, capsys):
  from jaxcnn import predict
  src = exported['tflite', 'none', 1]
  copy = str(tmp_path / 'renamed.bin')  # the format comes from the bytes
  shutil.copy(src, copy)
  model = runtime.ExportedModel(copy)
  assert model.format == 'tflite' and model.meta is None
  assert model.info.class_names[:2] == ('0', '1')
  shutil.copy(sidecar_path(exported['tflite', 'fp16', 1]),
              sidecar_path(copy))
  assert predict.main(['--model', copy, 'x.png']) == 2
  err = capsys.readouterr().err
  assert 'describes another file' in err and len(err.splitlines()) == 1


def _cli_error(capsys, *argv):
  code = export_cli.main(list(argv))
  err = capsys.readouterr().err
  assert code == 2, err
  assert err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
  return err


def test_unsupported_pairs_are_one_line_errors(workdir, tmp_path, capsys):
  out = str(tmp_path / 'm')
  err = _cli_error(capsys, '--workdir', workdir, '--format', 'stablehlo',
                   '--quantize', 'int8', '--output', out)
  assert 'tflite: none, fp16, int8' in err
  err = _cli_error(capsys, '--workdir', workdir, '--format', 'onnx',
                   '--output', out)
  assert 'valid: stablehlo, tflite' in err
  assert not os.listdir(tmp_path)


def test_bad_workdirs_and_outputs_are_one_line_errors(workdir, tmp_path,
                                                      capsys):
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  empty = tmp_path / 'untrained'
  empty.mkdir()
  (empty / 'config.json').write_text(json.dumps(config))
  out = str(tmp_path / 'm.tflite')
  err = _cli_error(capsys, '--workdir', str(empty), '--format', 'tflite',
                   '--output', out)
  assert 'no checkpoint in' in err
  config['compress']['method'] = 'prune'
  (empty / 'config.json').write_text(json.dumps(config))
  err = _cli_error(capsys, '--workdir', str(empty), '--format', 'tflite',
                   '--output', out)
  assert 'no model.jxcz in' in err  # a compression run that never finished
  for bad in (str(tmp_path / 'no' / 'm.tflite'), str(tmp_path),
              str(empty / 'config.json' / 'm.tflite')):
    err = _cli_error(capsys, '--workdir', workdir, '--format', 'tflite',
                     '--output', bad)
    assert '--output' in err
  assert sorted(os.listdir(tmp_path)) == ['untrained']
