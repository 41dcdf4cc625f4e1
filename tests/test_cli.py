"""The command-line entry points as users run them, in real subprocesses."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from jaxcnn.ops import conv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240


def _main_cmd(workdir, *overrides, config='configs/quickstart.py'):
  return [sys.executable, '-m', 'jaxcnn.main', '--config', config,
          '--workdir', str(workdir), *overrides]


def _run(cmd, **kw):
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                        timeout=TIMEOUT, **kw)


SHORT = ('--config.num_train_steps=24', '--config.batch_size=32',
         '--config.log_every_steps=4', '--config.checkpoint_every_steps=6',
         '--config.eval_every_steps=24')


def test_unknown_config_key_fails_fast_with_clear_message(tmp_path):
  r = _run(_main_cmd(tmp_path / 'w', '--config.batch_sizee=64'))
  assert r.returncode != 0
  assert 'batch_sizee' in r.stderr and 'Traceback' not in r.stderr
  assert not (tmp_path / 'w').exists()


def test_missing_dataset_is_one_clear_paragraph(tmp_path):
  env = dict(os.environ, JAXCNN_DATA_DIR=str(tmp_path))
  r = _run(_main_cmd(tmp_path / 'w', '--config.dataset.name=fashion_mnist',
                     '--config.dataset.allow_download=False',
                     f'--config.tfds_data_dir={tmp_path / "tfds"}',
                     '--config.input.resize=0', '--config.input.pad=2'),
           env=env)
  assert r.returncode == 2, r.stderr[-2000:]
  assert 'error: could not load dataset' in r.stderr
  assert 'Traceback' not in r.stderr


def test_sigkill_then_restart_reaches_the_same_final_metrics(tmp_path):
  ref = _run(_main_cmd(tmp_path / 'ref', *SHORT))
  assert ref.returncode == 0, ref.stderr[-2000:]
  killed = tmp_path / 'killed'
  proc = subprocess.Popen(_main_cmd(killed, *SHORT), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + TIMEOUT
    ckpts = killed / 'checkpoints'
    while time.time() < deadline and proc.poll() is None:
      if ckpts.exists() and any(d.isdigit() for d in os.listdir(ckpts)):
        break
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait(timeout=30)
  steps = sorted(int(d) for d in os.listdir(ckpts) if d.isdigit())
  assert steps and steps[-1] < 24, 'the kill should land mid-run'
  again = _run(_main_cmd(killed, *SHORT))
  assert again.returncode == 0, again.stderr[-2000:]
  a = json.load(open(tmp_path / 'ref' / 'final_metrics.json'))
  b = json.load(open(killed / 'final_metrics.json'))
  assert a['step'] == b['step'] == 24
  np.testing.assert_allclose(b['params']['loss'], a['params']['loss'],
                             rtol=1e-5)
  assert a['params']['precision@1'] == b['params']['precision@1']


def test_sigterm_saves_a_checkpoint_and_exits_3(tmp_path):
  proc = subprocess.Popen(
      _main_cmd(tmp_path, '--config.num_train_steps=100000',
                '--config.checkpoint_every_steps=0',
                '--config.eval_every_steps=0', '--config.log_every_steps=10'),
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    for line in proc.stdout:  # wait until training is really stepping
      if line.startswith('step 10,'):
        break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
  finally:
    proc.kill()
  assert proc.returncode == 3, err[-2000:]
  assert 'Run the same command to resume' in err
  assert any(d.isdigit() for d in os.listdir(tmp_path / 'checkpoints'))


def test_predict_top3_and_per_file_errors(tmp_path):
  from PIL import Image
  r = _run(_main_cmd(tmp_path / 'w', '--config.num_train_steps=4',
                     '--config.log_every_steps=2',
                     '--config.checkpoint_every_steps=4',
                     '--config.eval_every_steps=4'))
  assert r.returncode == 0, r.stderr[:3000]
  # One CPU device: oneDNN's convolutions when the library loads here.
  want = 'convolutions: oneDNN' if conv.onednn_status().ok else 'convolutions: XLA eigen'
  assert want in r.stdout, r.stdout[-2000:]
  rgba = tmp_path / 'rgba.png'
  Image.fromarray(np.zeros((40, 30, 4), np.uint8)).save(rgba)
  gray = tmp_path / 'gray.jpg'
  Image.fromarray(np.full((8, 8), 200, np.uint8)).save(gray)
  junk = tmp_path / 'junk.png'
  junk.write_bytes(b'\x89PNG\r\n\x1a\n truncated')
  p = _run([sys.executable, '-m', 'jaxcnn.predict', '--workdir',
            str(tmp_path / 'w'), str(rgba), str(junk), str(gray),
            str(tmp_path / 'missing.png')])
  assert p.returncode == 1
  lines = p.stdout.strip().splitlines()
  assert len(lines) == 2 and lines[0].startswith(str(rgba))
  assert lines[0].count('(') == 3  # top-3 with probabilities
  assert f'error: {junk}: not a readable image' in p.stderr
  assert f'error: {tmp_path / "missing.png"}: no such file' in p.stderr
  assert 'Traceback' not in p.stderr
