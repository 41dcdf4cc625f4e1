"""Fault injection: real training subprocesses killed at random moments.

Each life of the run is a fresh process, killed with SIGKILL (or SIGTERM)
a random moment after it starts stepping, often in the middle of an
(asynchronous) checkpoint write since one is written every 2 steps. After
every kill: the workdir must load, and no completed checkpoint may be lost.
At the end the resumed run's parameters must equal an uninterrupted run's.
JAXCNN_FAULT_KILLS sets the number of kills (default 6, every third one
SIGTERM: the suite's time budget; JAXCNN_FAULT_KILLS=50 for a longer soak,
which also lengthens the run so that kills keep landing mid-run).
"""
import os
import random
import signal
import subprocess
import sys
import time

import chex

from jaxcnn import checkpoint, experiment, parallel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
KILLS = int(os.environ.get('JAXCNN_FAULT_KILLS', '6'))
# Each life steps a few times before its kill; 120 steps outlast 6 kills.
STEPS = max(120, 25 * KILLS)
LIFE_TIMEOUT = 180
FLAGS = (f'--config.num_train_steps={STEPS}', '--config.batch_size=32',
         '--config.log_every_steps=1', '--config.checkpoint_every_steps=2',
         '--config.keep_checkpoints=100000', '--config.eval_every_steps=0',
         '--config.write_summaries=False')


def _env(cache_dir):
  # A shared persistent compilation cache keeps each life's start-up short.
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache_dir),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1')


def _cmd(workdir):
  return [sys.executable, '-m', 'jaxcnn.main', '--config',
          'configs/quickstart.py', '--workdir', str(workdir), *FLAGS]


def _template():
  from configs import quickstart
  config = quickstart.get_config()
  config.num_train_steps = STEPS
  return experiment.state_template(config, parallel.make_mesh())


def _load(workdir, template):
  state, step, steps = checkpoint.load_latest(
      os.path.join(workdir, 'checkpoints'), template)
  return state, step, set(steps)


def test_random_kills_lose_nothing_and_resume_exactly(tmp_path):
  env = _env(tmp_path / 'jax_cache')
  ref = subprocess.run(_cmd(tmp_path / 'ref'), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=LIFE_TIMEOUT)
  assert ref.returncode == 0, ref.stderr[-3000:]
  template = _template()
  rng = random.Random(1234)
  workdir = tmp_path / 'faulty'
  saved, kills, lives = set(), 0, 0
  while True:
    lives += 1
    assert lives <= KILLS + 5, 'the run never finished'
    proc = subprocess.Popen(_cmd(workdir), cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    sig = None
    try:
      if kills < KILLS:
        deadline = time.time() + LIFE_TIMEOUT
        for line in proc.stdout:  # wait until this life is really stepping
          if line.startswith('step ') or time.time() > deadline:
            break
        time.sleep(rng.uniform(0.0, 0.4))
        sig = signal.SIGTERM if kills % 3 == 2 else signal.SIGKILL
        proc.send_signal(sig)
      proc.communicate(timeout=LIFE_TIMEOUT)
    finally:
      proc.kill()
      proc.wait()
    if proc.returncode == 0:
      break  # finished (possibly before the signal landed)
    kills += 1
    expected = {signal.SIGKILL: -signal.SIGKILL, signal.SIGTERM: 3}[sig]
    assert proc.returncode == expected, (sig, proc.returncode)
    _, step, steps = _load(workdir, template)
    assert saved <= steps, f'lost checkpoints {sorted(saved - steps)}'
    saved = steps
  assert kills >= KILLS
  a, step_a, _ = _load(tmp_path / 'ref', template)
  b, step_b, steps = _load(workdir, template)
  assert step_a == step_b == STEPS and saved <= steps
  chex.assert_trees_all_close(a.params, b.params, rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_equal(a.rng, b.rng)
  chex.assert_trees_all_close(a.opt_state, b.opt_state, rtol=1e-6, atol=1e-6)
