"""Training on a streamed image folder through the real CLI: it trains and
evaluates every val image once, and a run interrupted and resumed from its
checkpoint (the grain iterator state saved with it) ends with exactly the
weights of an uninterrupted one; eval_once and predict read the workdir."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.test_streaming import PER_CLASS, _cifar_jpegs, write_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ['--config.dataset.name=imagefolder', '--config.dataset.image_size=32',
         '--config.dataset.workers=0',
         '--config.batch_size=20', '--config.eval_batch_size=25',
         '--config.log_every_steps=2', '--config.checkpoint_every_steps=3',
         '--config.eval_every_steps=6', '--config.write_summaries=False',
         '--config.input.random_crop=False', '--config.input.flip=True']


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  return write_folder(tmp_path_factory.mktemp('imgs'), _cifar_jpegs())


def _main(workdir, folder, *extra):
  cmd = [sys.executable, '-m', 'jaxcnn.main',
         f'--config={ROOT}/configs/cifar10_tutorial.py', f'--workdir={workdir}',
         f'--config.dataset.root={folder}', *FLAGS, *extra]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                        cwd=ROOT)


def _weights(workdir):
  from jaxcnn import reopen
  run = reopen.reopen(workdir, weights='params')
  return [np.asarray(x) for x in
          __import__('jax').tree.leaves(run.state.params)]


def test_streamed_folder_trains_resumes_exactly_and_is_readable(
    folder, tmp_path):
  straight, resumed = str(tmp_path / 'a'), str(tmp_path / 'b')
  p = _main(straight, folder, '--config.num_train_steps=6')
  assert p.returncode == 0, p.stderr[-2000:]
  assert 'streamed (200 train images)' in p.stdout
  # Stopped after step 3 (its checkpoint), then resumed to step 6.
  p = _main(resumed, folder, '--config.num_train_steps=3')
  assert p.returncode == 0, p.stderr[-2000:]
  p = _main(resumed, folder, '--config.num_train_steps=6',
            '--config.resume_override=num_train_steps')
  assert p.returncode == 0, p.stderr[-2000:]
  for a, b in zip(_weights(straight), _weights(resumed)):
    np.testing.assert_array_equal(a, b)
  from jaxcnn import checkpoint
  meta = checkpoint.Checkpointer(os.path.join(resumed, 'checkpoints')
                                 ).custom_metadata(6)
  assert meta['data_iterator']['next_step'] == 6
  # eval_once: config from the workdir, every val image counted once.
  p = subprocess.run([sys.executable, '-m', 'jaxcnn.main',
                      f'--workdir={straight}', '--mode=eval_once'],
                     capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert p.returncode == 0, p.stderr[-2000:]
  assert 'precision @ 1' in p.stdout
  from jaxcnn import runs
  r = runs.evaluate(straight, None, once=True)
  assert r['params']['count'] == 10 * PER_CLASS['val']
  img = next(os.scandir(os.path.join(folder, 'val', 'cat'))).path
  from jaxcnn import predict
  assert predict.main(['--workdir', straight, img]) == 0
  # The folder changed under the run: resuming is refused in one line
  # (the checkpoint's iterator state names other data), nothing trained.
  import shutil
  shutil.copy(img, os.path.join(folder, 'train', 'cat', 'copy.jpg'))
  p = _main(straight, folder, '--config.num_train_steps=9',
            '--config.resume_override=num_train_steps')
  assert p.returncode == 2, p.stderr[-2000:]
  assert 'the streamed data changed since it was saved' in p.stderr
  assert 'Traceback' not in p.stderr
