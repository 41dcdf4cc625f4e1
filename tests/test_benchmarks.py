"""Smoke test of the benchmark harness (benchmarks/run.py) on a tiny model.

No timing is asserted: only that a run produces a complete report, and that
the reference models are the same size as jaxcnn's.
"""
import json

import numpy as np
import pytest

from benchmarks import machine


def test_harness_smoke_report(tmp_path):
  from benchmarks import run
  out = str(tmp_path / 'bench')
  report = run.main(['--models', 'lenet5_digits', '--frameworks', 'jaxcnn',
                     '--reps', '1', '--steps', '1', '--warmup', '1',
                     '--batch', '8', '--peak_n', '256', '--out', out])
  with open(out + '.json') as f:
    saved = json.load(f)
  assert saved['results'][0]['model'] == 'lenet5_digits'
  r = report['results'][0]
  assert r['params'] == 61706 and r['macs_per_image'] == 416520
  rows = r['rows']
  # The real pipeline (embedded digits), host-fed and device-resident, ran
  # beside the synthetic batch.
  assert set(rows) == {'jaxcnn', 'jaxcnn (real data)', 'jaxcnn (device data)'}
  for key in ('images_per_sec', 'min', 'max', 'ms_per_step'):
    assert rows['jaxcnn']['train'][key] > 0
    assert rows['jaxcnn']['eval'][key] > 0
  assert rows['jaxcnn']['memory_bytes'] > 0
  assert 0 < rows['jaxcnn']['flop_fraction']
  assert r['ratios']['real_vs_synthetic'] > 0
  assert r['ratios']['device_data_vs_synthetic'] > 0
  # No reference asked for: only the data ratios.
  assert r['ratios'].keys() == {'real_vs_synthetic', 'device_data_vs_synthetic'}
  md = open(out + '.md').read()
  assert '| lenet5_digits | jaxcnn |' in md and 'load average' in md


def test_unknown_variant_is_a_usage_error():
  from benchmarks import run
  with pytest.raises(SystemExit):
    run.main(['--jax_variants', 'nonsense'])


def test_torch_references_have_jaxcnn_parameter_counts():
  pytest.importorskip('torch')
  from benchmarks.reference import torch_models
  expected = {  # jaxcnn's counts, from the model docstrings and tests
      ('lenet5', (32, 32, 1)): 61706,
      ('cifar10_tutorial', (24, 24, 3)): 1068298,
      ('alexnet_cifar', (32, 32, 3)): 7706442,
      ('resnet20_cifar', (32, 32, 3)): 269722,
      ('mobilenet_v2_cifar', (32, 32, 3)): 2236682,
  }
  for (name, shape), n in expected.items():
    assert torch_models.param_count(torch_models.build(name, shape, 10)) == n


def test_profile_step_sums_xla_op_times(tmp_path, capsys):
  from benchmarks import profile_step
  assert profile_step.main(['--model', 'quickstart', '--steps', '1',
                            '--top', '40', '--trace_dir',
                            str(tmp_path)]) == 0
  total = profile_step.op_times(str(tmp_path))
  assert total and all(ps >= 0 for ps in total.values())
  # The quickstart LeNet-5 step has convolutions (XLA's, or oneDNN's custom
  # calls, labelled with their target); the table names them.
  out = capsys.readouterr().out
  assert 'ms/step of op time' in out and 'conv' in out


def test_profile_step_unknown_model(capsys):
  from benchmarks import profile_step
  assert profile_step.main(['--model', 'no_such_net']) == 2
  assert 'no config' in capsys.readouterr().err


def test_step_faults_reports_throughput_and_faults(capsys):
  """benchmarks/step_faults.py on the quickstart net: one line with both
  throughputs and the faults per step (a number, not asserted: timing)."""
  from benchmarks import step_faults
  assert step_faults.main(['--model', 'quickstart', '--reps', '1',
                           '--steps', '1']) == 0
  out = capsys.readouterr().out
  assert 'xla_cpu_conv=auto' in out and 'host malloc: keep' in out
  assert 'train img/s' in out and 'minor page faults per train step' in out


def test_summary_cost_times_the_runs_summary_step(tmp_path, capsys):
  """benchmarks/summary_cost.py on the quickstart net, through the writer a
  run uses: its JSON names every histogram and scalar it wrote (the times
  are reported, not asserted)."""
  from benchmarks import summary_cost
  summary_cost.main(['--config', 'configs/quickstart.py', '--batch', '8',
                     '--steps', '1', '--reps', '1', '--out', str(tmp_path)])
  with open(tmp_path / 'summary_cost_cpu.json') as f:
    rec = json.load(f)
  assert rec['num_histograms'] > 0 and rec['num_scalars'] > 0
  for k in ('train_ms', 'summary_ms', 'write_ms', 'overhead_pct'):
    assert rec[k] > 0, k


@pytest.mark.parametrize('flags,isa,note', [
    ('fpu sse2 avx fma avx2 bmi2', 'avx2 fma', '(no AVX-512)'),
    ('avx2 fma avx512f avx512_bf16 avx512_vnni avx_vnni',
     'avx2 fma avx512f avx512_bf16 avx512_vnni avx_vnni', ''),
    ('avx2 fma avx512f amx_tile amx_bf16', 'avx2 fma avx512f amx_tile amx_bf16',
     ''),
])
def test_machine_line_names_the_vector_isa(flags, isa, note):
  """Reports name the ISA: the same 'AMD EPYC, 2 cores' VM has come with
  and without AVX-512 (benchmarks/machine.py)."""
  cpuinfo = ('processor\t: 0\nmodel name\t: AMD EPYC\n'
             f'flags\t\t: {flags}\n\nprocessor\t: 1\n')
  line = machine.describe(cpuinfo)
  assert 'AMD EPYC' in line and f'ISA: {isa}' in line
  assert line.endswith(note) if note else 'no AVX-512' not in line
  assert machine.isa('') == [] and 'ISA' not in machine.describe('')


@pytest.mark.parametrize('shape', [(2, 8, 8, 3, 5), (2, 7, 5, 4, 3),
                                   (1, 1, 1, 2, 2), (3, 6, 9, 2, 4)])
def test_winograd_probe_computes_the_convolution(shape):
  """The probe's numbers mean something only if its Winograd is exact."""
  import jax
  from jax import lax
  from benchmarks import winograd_probe as wp
  n, h, w, c, o = shape
  rng = np.random.default_rng(0)
  x = rng.standard_normal((n, h, w, c), np.float32)
  k = rng.standard_normal((3, 3, c, o), np.float32)
  want = np.asarray(lax.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  for spec, tol in ((wp.F23, 1e-5), (wp.F43, 1e-4)):
    got = np.asarray(jax.jit(wp.winograd_conv, static_argnums=2)(x, k, spec))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=tol * np.abs(want).max())


def test_ratios_cover_every_jaxcnn_variant():
  """Medians and per-round spread, for jaxcnn's default (keyed by the
  reference) and each variant ('jaxcnn[v] / ref'); data-path rows are
  ratios to the synthetic default only."""
  from benchmarks import run
  train_t = {'jaxcnn': [0.10, 0.20], 'jaxcnn[bf]': [0.05, 0.10],
             'tf': [0.20, 0.20], 'jaxcnn (real data)': [0.125, 0.125]}
  eval_t = {'jaxcnn': [0.04, 0.04], 'jaxcnn[bf]': [0.02, 0.04],
            'tf': [0.04, 0.04]}
  ips = lambda s: {'images_per_sec': 100 / s}  # pylint: disable=unnecessary-lambda-assignment
  rows = {k: {'train': ips(float(np.median(v)))} for k, v in train_t.items()}
  for k, v in eval_t.items():
    rows[k]['eval'] = ips(float(np.median(v)))
  ratios, spread = run.make_ratios(rows, train_t, eval_t)
  assert set(ratios) == {'tf', 'jaxcnn[bf] / tf', 'real_vs_synthetic'}
  np.testing.assert_allclose(ratios['tf']['train'], 0.2 / 0.15)
  np.testing.assert_allclose(ratios['jaxcnn[bf] / tf']['train'], 0.2 / 0.075)
  np.testing.assert_allclose(ratios['jaxcnn[bf] / tf']['eval'], 0.04 / 0.03)
  np.testing.assert_allclose(spread['tf']['train'], [1.0, 2.0])
  np.testing.assert_allclose(spread['jaxcnn[bf] / tf']['train'], [2.0, 4.0])
  np.testing.assert_allclose(spread['jaxcnn[bf] / tf']['eval'], [1.0, 2.0])
  np.testing.assert_allclose(ratios['real_vs_synthetic'], 0.15 / 0.125)
