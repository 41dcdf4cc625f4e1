"""The run directory (issue 16, items 3, 4, 8 and the workdir classes): one
trainer per workdir, stale locks, readers beside a live trainer, resume
under another config, unusable paths, partial files after a crash."""
import json
import os
import subprocess
import sys
import time

import pytest

from jaxcnn import runs
from jaxcnn import workdir as run_dir
from jaxcnn.errors import WorkdirError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
HOLD = ('import sys, time; from jaxcnn import workdir; '
        'workdir.Lock(sys.argv[1]).acquire(); print("held", flush=True); '
        'time.sleep(600)')


def _holder(path):
  p = subprocess.Popen([sys.executable, '-c', HOLD, str(path)], cwd=ROOT,
                       stdout=subprocess.PIPE, text=True)
  assert p.stdout.readline().strip() == 'held'
  return p


def test_second_trainer_is_refused_naming_the_holder(tmp_path, tiny_config):
  p = _holder(tmp_path)
  try:
    assert run_dir.is_locked(str(tmp_path))
    with pytest.raises(WorkdirError, match=f'PID {p.pid}') as e:
      runs.train(tiny_config, str(tmp_path))
    assert 'host' in str(e.value) and 'started' in str(e.value)
    assert not (tmp_path / 'checkpoints').exists()
  finally:
    p.kill()
    p.wait()
  # A lock left by a killed holder is stale: the next trainer runs.
  assert not run_dir.is_locked(str(tmp_path))
  r = runs.train(tiny_config, str(tmp_path))
  assert r['params']['count'] == 360
  assert not run_dir.is_locked(str(tmp_path))  # released at the end


def test_readers_are_not_blocked_by_a_trainer(tmp_path, tiny_config):
  runs.train(tiny_config, str(tmp_path))
  p = _holder(tmp_path)
  try:
    r = runs.evaluate(str(tmp_path), tiny_config, once=True)
    assert r['params']['count'] == 360
  finally:
    p.kill()
    p.wait()


def _cli(workdir, *args, config='configs/quickstart.py'):
  return [sys.executable, '-m', 'jaxcnn.main', '--config', config,
          '--workdir', str(workdir), *args]


def test_two_trainers_and_a_watcher_on_one_live_run(tmp_path):
  """The real CLI: a trainer, a second trainer (refused, exit 5), and
  --mode=eval following the live run until its final step."""
  wd = tmp_path / 'run'
  args = ('--config.num_train_steps=300', '--config.checkpoint_every_steps=60',
          '--config.eval_every_steps=0', '--config.log_every_steps=60')
  trainer = subprocess.Popen(_cli(wd, *args), cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    deadline = time.time() + 120
    while not run_dir.is_locked(str(wd)):
      assert trainer.poll() is None and time.time() < deadline
      time.sleep(0.2)
    watcher = subprocess.Popen(
        _cli(wd, *args, '--mode=eval', '--eval_poll_seconds=0.3'), cwd=ROOT,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = subprocess.run(_cli(wd, *args), cwd=ROOT, text=True,
                            capture_output=True, timeout=120)
    assert second.returncode == 5, second.stderr
    assert f'PID {trainer.pid}' in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    out, err = trainer.communicate(timeout=240)
    assert trainer.returncode == 0, err
    w_out, w_err = watcher.communicate(timeout=120)
    assert watcher.returncode == 0, w_err
  finally:
    for p in (trainer,):
      if p.poll() is None:
        p.kill()
  steps = [int(l.split()[1].rstrip(':')) for l in w_out.splitlines()
           if l.startswith('step ') and 'precision' in l and 'ema' not in l]
  assert steps and steps[-1] == 300  # followed the run to its end
  assert steps == sorted(set(steps))
  lines = [json.loads(l) for l in (wd / 'metrics.jsonl').read_text()
           .splitlines()]
  assert [r['step'] for r in lines if r['split'] == 'train'] == [
      60, 120, 180, 240, 300]


def test_watcher_skips_a_damaged_step_once_and_ends(tmp_path, tiny_config,
                                                   capsys):
  runs.train(tiny_config, str(tmp_path))
  capsys.readouterr()
  ck = tmp_path / 'checkpoints' / '6' / '_CHECKPOINT_METADATA'
  ck.write_text('{not json')
  t0 = time.time()
  r = runs.evaluate(str(tmp_path), tiny_config, once=False, poll_seconds=0.1,
                   grace_seconds=0.5)
  out = capsys.readouterr().out
  assert time.time() - t0 < 60
  assert r['params']['count'] == 360
  assert out.count('step 3: precision @ 1 = ') == 2  # the fallback, once
  assert out.count('(ema weights)') == 1               # (raw and EMA)
  assert out.count('checkpoints/6') == 1 and 'skipped' in out
  assert 'every checkpoint there is evaluated' in out


def _resume_error(tiny_config, tmp_path, **changes):
  for key, value in changes.items():
    node = tiny_config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  with pytest.raises(WorkdirError) as e:
    runs.train(tiny_config, str(tmp_path))
  return str(e.value)


@pytest.mark.parametrize('key,value', [
    ('batch_size', 16), ('seed', 3), ('optim.learning_rate', 0.01),
    ('num_train_steps', 12), ('input.flip', True), ('model.name',
                                                    'lenet5_classic')])
def test_resume_under_a_different_config_is_refused(tiny_config, tmp_path,
                                                    key, value):
  runs.train(tiny_config, str(tmp_path))
  before = (tmp_path / 'config.json').read_text()
  msg = _resume_error(tiny_config, tmp_path, **{key: value})
  assert key in msg and 'resume_override' in msg
  assert (tmp_path / 'config.json').read_text() == before


def test_resume_override_and_neutral_fields(tiny_config, tmp_path):
  runs.train(tiny_config, str(tmp_path))
  tiny_config.log_every_steps = 3  # neutral: no override needed
  tiny_config.eval_every_steps = 3
  runs.train(tiny_config, str(tmp_path))
  tiny_config.num_train_steps = 9
  tiny_config.resume_override = 'num_train_steps'
  r = runs.train(tiny_config, str(tmp_path))
  assert json.loads((tmp_path / 'final_metrics.json').read_text())['step'] == 9
  assert r['params']['count'] == 360
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['num_train_steps'] == 9
  assert (tmp_path / 'config.6.json').exists()  # the old config is kept


def _bad_workdir(kind, tmp_path):
  if kind == 'file':
    p = tmp_path / 'f'
    p.write_text('x')
    return str(p)
  if kind == 'too_long':
    return str(tmp_path / ('x' * 300))
  if kind == 'blank':
    return '  '
  if kind == 'checkpoints_is_file':
    (tmp_path / 'checkpoints').write_text('x')
    return str(tmp_path)
  if kind == 'config_is_dir':
    (tmp_path / 'config.json').mkdir()
    return str(tmp_path)
  if kind == 'under_a_file':
    (tmp_path / 'f').write_text('x')
    return str(tmp_path / 'f' / 'run')
  return '/proc/jaxcnn-run'  # not creatable, even as root


@pytest.mark.parametrize('kind', ['file', 'too_long', 'blank',
                                  'checkpoints_is_file', 'config_is_dir',
                                  'under_a_file', 'unwritable'])
def test_unusable_workdir_is_one_clear_error(tiny_config, tmp_path, kind):
  path = _bad_workdir(kind, tmp_path)
  with pytest.raises(WorkdirError, match='workdir|should be'):
    runs.train(tiny_config, path)


def test_unusable_workdir_via_the_cli(tmp_path):
  (tmp_path / 'f').write_text('x')
  r = subprocess.run(_cli(tmp_path / 'f', '--config.num_train_steps=2'),
                     cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert r.returncode == 5
  assert r.stderr.startswith('error: workdir') and 'Traceback' not in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1


def test_partial_metrics_line_after_a_crash_is_repaired(tiny_config,
                                                        tmp_path):
  runs.train(tiny_config, str(tmp_path))
  path = tmp_path / 'metrics.jsonl'
  with open(path, 'a') as f:
    f.write('{"step": 7, "split": "tra')  # killed mid-write
  tiny_config.num_train_steps = 9
  tiny_config.resume_override = 'num_train_steps'
  runs.train(tiny_config, str(tmp_path))
  records = [json.loads(l) for l in path.read_text().splitlines()]
  assert records[-1]['step'] == 9
  with open(path, 'a') as f:
    f.write('garbage\n{"step": 9, "split": "train", "loss": 1.0}\n{"ste')
  last = run_dir.read_jsonl(str(path))
  assert [r for r in last if r['step'] == 9 and r['split'] == 'train'
          ][0]['loss'] == 1.0


@pytest.mark.parametrize('damage', ['truncated', 'empty', 'list', 'binary'])
def test_damaged_config_json_is_one_clear_error(tiny_config, tmp_path,
                                                damage):
  from jaxcnn import predict
  runs.train(tiny_config, str(tmp_path))
  path = tmp_path / 'config.json'
  text = path.read_text()
  path.write_bytes({'truncated': text[:len(text) // 2].encode(),
                    'empty': b'', 'list': b'[1, 2]',
                    'binary': b'\xff\xfe\x00garbage'}[damage])
  with pytest.raises(WorkdirError, match='config.json'):
    runs.train(tiny_config, str(tmp_path))  # resume
  with pytest.raises(WorkdirError, match='config.json'):
    predict.Predictor(str(tmp_path))
  assert len(os.listdir(tmp_path / 'checkpoints')) == 2  # nothing lost
