"""Smoke tests of the process-isolated harness (benchmarks/run.py default
mode, benchmarks/isolated.py, benchmarks/worker.py) and of the
time-to-accuracy benchmark (benchmarks/tta.py, benchmarks/reference/tta_tf.py).

Tiny settings; the structure of the reports is checked (own processes,
interleaved rounds, load recorded), never a time or a speed.
"""
import json
import os

import numpy as np
import pytest


def _runs_in_order(rounds):
  return [run for rec in rounds for run in rec['runs']]


def test_isolated_harness_interleaves_own_processes(tmp_path):
  pytest.importorskip('tensorflow')
  from benchmarks import run
  out = str(tmp_path / 'iso')
  report = run.main(['--models', 'lenet5_digits', '--frameworks', 'jaxcnn,tf',
                     '--reps', '2', '--steps', '2', '--warmup', '1',
                     '--batch', '8', '--peak_n', '256', '--real_data', '0',
                     '--out', out])
  assert report['mode'] == 'isolated'
  r = report['results'][0]
  rows = r['rows']
  assert set(rows) == {'jaxcnn', 'tf'}
  parent = report['parent_pid']
  assert parent == os.getpid()
  pids = {name: row['pid'] for name, row in rows.items()}
  assert parent not in pids.values() and pids['jaxcnn'] != pids['tf']
  for row in rows.values():
    assert row['train']['images_per_sec'] > 0
    assert row['eval']['images_per_sec'] > 0
  # 2 train rounds then 2 eval rounds, each: jaxcnn's process, then TF's.
  rounds = r['rounds']
  assert [(x['phase'], x['round']) for x in rounds] == [
      ('train', 0), ('train', 1), ('eval', 0), ('eval', 1)]
  for rec in rounds:
    assert [x['key'] for x in rec['runs']] == ['jaxcnn', 'tf']
    assert [x['pid'] for x in rec['runs']] == [pids['jaxcnn'], pids['tf']]
    assert len(rec['loadavg']) == 3 and all(x >= 0 for x in rec['loadavg'])
  runs = _runs_in_order(rounds)
  for a, b in zip(runs, runs[1:]):  # one process at a time, in that order
    assert a['start_s'] <= a['end_s'] <= b['start_s']
  assert r['ratios'].keys() == {'tf'}
  assert r['ratios']['tf']['train'] > 0
  lo, hi = r['ratio_spread']['tf']['train']
  assert 0 < lo <= hi
  # The TF worker runs TF's own default, not the parent's oneDNN setting.
  assert 'TF_ENABLE_ONEDNN_OPTS' not in r['worker_env']['tf']
  with open(out + '.json') as f:
    assert json.load(f)['mode'] == 'isolated'
  md = open(out + '.md').read()
  assert md.startswith('Mode: isolated') and 'before each round' in md
  assert '| lenet5_digits | tf |' in md


def test_in_process_mode_is_labelled(tmp_path):
  from benchmarks import run
  out = str(tmp_path / 'inproc')
  report = run.main(['--in_process', '--models', 'lenet5_digits',
                     '--frameworks', 'jaxcnn', '--reps', '1', '--steps', '1',
                     '--warmup', '1', '--batch', '8', '--peak_n', '256',
                     '--real_data', '0', '--out', out])
  assert report['mode'] == 'in_process'
  assert report['results'][0]['rows']['jaxcnn']['pid'] == os.getpid()
  assert 'IN-PROCESS' in open(out + '.md').read().splitlines()[0]


def test_worker_reports_errors_and_death():
  from benchmarks import isolated
  w = isolated.Proc('jaxcnn')
  with pytest.raises(isolated.WorkerError, match='unknown op'):
    w.ask('nonsense')
  w.close()
  assert w.proc.returncode == 0
  with pytest.raises(isolated.WorkerError, match='exited'):
    w.ask('warmup', steps=1)


def test_tta_smoke_both_frameworks_two_rounds(tmp_path):
  pytest.importorskip('tensorflow')
  from benchmarks import tta
  out = str(tmp_path / 'tta')
  report = tta.main(['--config', 'quickstart', '--epochs', '2', '--steps', '3',
                     '--target', '0.0', '--rounds', '2',
                     '--jax_args=--config.end_plots=False '
                     '--config.write_summaries=False',
                     '--out', out])
  assert report['steps_per_epoch'] == 3
  rounds = report['rounds']
  # The second round reverses the order; each run is its own process.
  assert [r['order'] for r in rounds] == [['jaxcnn', 'tf'], ['tf', 'jaxcnn']]
  assert [list(r['runs']) for r in rounds] == [r['order'] for r in rounds]
  assert report['runs'] == rounds[0]['runs']
  pids = [run['pid'] for r in rounds for run in r['runs'].values()]
  assert os.getpid() not in pids and len(set(pids)) == 4
  for rec in rounds:
    for fw, run in rec['runs'].items():
      assert run['returncode'] == 0, fw
      eps = run['epochs']
      assert [e['step'] for e in eps] == [3, 6], fw
      assert [e['epoch'] for e in eps] == [1.0, 2.0]
      for e in eps:
        assert 0.0 <= e['raw'] <= 1.0 and 0.0 <= e['ema'] <= 1.0
        assert 0 < e['raw_time_s'] <= e['ema_time_s'] <= run['wall_s']
      assert eps[0]['ema_time_s'] <= eps[1]['raw_time_s']
      # target 0: reached at the first evaluation, at its time.
      assert run['time_to_target']['raw'] == {
          'time_s': eps[0]['raw_time_s'], 'epoch': 1.0}
      assert len(run['loadavg_before']) == 3
    ratios = rec['ratios_tf_over_jaxcnn']
    assert set(ratios) >= {'last_epoch_raw', 'target_ema'}
    tj, tt = (rec['runs'][fw]['epochs'][-1]['raw_time_s']
              for fw in ('jaxcnn', 'tf'))
    assert ratios['last_epoch_raw'] == pytest.approx(tt / tj)
  # Overall: the geometric mean of the two rounds' ratios.
  r0, r1 = (r['ratios_tf_over_jaxcnn']['last_epoch_raw'] for r in rounds)
  assert report['ratios_tf_over_jaxcnn']['last_epoch_raw'] == pytest.approx(
      (r0 * r1) ** 0.5)
  with open(out + '.json') as f:
    assert json.load(f)['config'] == 'configs/quickstart.py'
  md = open(out + '.md').read()
  assert md.count('| epoch | ') == 2 and 'Time to 0.00' in md
  assert '### Round 2 (tf, jaxcnn)' in md and 'Geometric mean over the 2' in md


def test_tta_tf_batches_and_schedules_match_jaxcnn():
  from benchmarks.reference import tta_tf
  from jaxcnn import optim
  from jaxcnn.data import pipeline
  ours = list(tta_tf.train_rows(103, 10, 7, 25))
  it = pipeline.train_rows(103, 10, 7)
  for rows in ours:
    np.testing.assert_array_equal(rows, next(it))
  for name in ('cifar10_tutorial', 'alexnet_cifar', 'quickstart'):
    c = tta_tf.load_config(f'configs/{name}.py')
    for schedule in ('constant', 'staircase_exp', 'cosine'):
      c.optim.schedule = schedule
      c.optim.decay_epochs = 2.0
      ref = optim.make_schedule(c, 20, 130, c.batch_size)
      want = np.asarray([float(ref(t)) for t in range(130)])
      np.testing.assert_allclose(tta_tf.learning_rates(c, 20, 130), want,
                                 rtol=1e-5, atol=1e-8,  # optax: fp32
                                 err_msg=f'{name} {schedule}')
