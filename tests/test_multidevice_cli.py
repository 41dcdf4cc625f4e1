"""Data-parallel runs of the shipped configs through the real CLI, at default
XLA flags (only the fake device count set), and the two properties behind
issue 16's deadlock: at most a bounded number of programs in flight on
XLA:CPU, and collectives that data dependencies order
(test_multidevice_collectives.py).

By hand: XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m
jaxcnn.main --config configs/quickstart.py --workdir /tmp/q8
"""
import json
import os
import subprocess
import sys

import jax
import pytest

from jaxcnn import parallel
from tests.conftest import real_data_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_cli(devices, config, workdir, *overrides, timeout=300):
  env = dict(os.environ, XLA_FLAGS=(
      f'--xla_force_host_platform_device_count={devices}'))
  cmd = [sys.executable, '-m', 'jaxcnn.main', '--config', config,
         '--workdir', str(workdir), *overrides]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)


# Two devices: test_tutorial_with_mid_run_evals_on_two_devices below.
@pytest.mark.parametrize('devices', [8])
def test_quickstart_at_default_settings_on_many_devices(tmp_path, devices):
  r = _run_cli(devices, 'configs/quickstart.py', tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  final = json.loads((tmp_path / 'final_metrics.json').read_text())
  assert final['params']['count'] == 360
  assert final['params']['precision@1'] > 0.95
  # A newcomer's first run: the plots, and no TF/absl start-up noise.
  assert (tmp_path / 'curves.png').exists()
  assert (tmp_path / 'confusion_matrix.png').exists()
  assert 'oneDNN' not in r.stderr and 'rendezvous' not in r.stderr
  assert not r.stderr.strip(), r.stderr[-2000:]
  # A batch-sharded mesh keeps XLA's convolutions, and the log says why.
  assert 'convolutions: XLA eigen' in r.stdout and 'one-device' in r.stdout


@pytest.mark.skipif(real_data_dir() is None, reason='needs JAXCNN_DATA_DIR')
def test_tutorial_with_mid_run_evals_on_two_devices(tmp_path):
  r = _run_cli(2, 'configs/cifar10_tutorial.py', tmp_path,
               '--config.num_train_steps=40', '--config.eval_every_steps=20',
               '--config.log_every_steps=10',
               '--config.checkpoint_every_steps=20',
               '--config.end_plots=False')
  assert r.returncode == 0, r.stderr[-3000:]
  evals = [l for l in r.stdout.splitlines() if 'precision @ 1' in l]
  assert len(evals) >= 4  # raw and EMA at steps 20 and 40


def test_throttle_bounds_programs_in_flight():
  waited = []

  class Out:
    def __init__(self, i):
      self.i = i

    def block_until_ready(self):
      waited.append(self.i)
      return self

  t = parallel.Throttle(2)
  for i in range(5):
    t(Out(i))
  assert waited == [0, 1, 2]  # never more than 2 unfinished
  mesh = parallel.make_mesh()
  assert parallel.Throttle.for_mesh(mesh).limit == (
      0 if len(jax.devices()) == 1 else parallel.CPU_MULTI_DEVICE_INFLIGHT)
