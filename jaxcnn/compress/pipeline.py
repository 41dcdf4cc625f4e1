"""The Deep Compression pipeline (Han et al. 2016) as three stage workdirs.

  WORKDIR/1_prune   prune + fine-tune: an ordinary compression run
                    (compress.method='prune') from config.init_from;
  WORKDIR/2_kmeans  k-means weight sharing of the surviving weights +
                    codebook fine-tuning (kmeans.py), init_from 1_prune;
  WORKDIR/model.jxcz  stage 3: the shared sparse kernels re-encoded with
                    canonical Huffman codes (huffman.py, storage 'huffman').

A config with compress.method='deep_compression' runs it
(jaxcnn.runs.train hands such configs here), as does
`python -m jaxcnn.compress --method deep_compression`. Nothing is lost on
failure: each stage is a normal run that resumes from its own checkpoints,
a stage with a compression_report.json is finished and skipped, and stage
3 is a pure function of stage 2's artifact (skipped too once WORKDIR has
its report).

The final report (compression_report.json / .md / .png in WORKDIR) is the
usual one for dense -> final file, plus `stages`: per layer and in total the
bytes of the dense, pruned, quantized and Huffman-coded files (Table 1 of
the paper) and each stage's accuracy.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np

from jaxcnn import experiment, train
from jaxcnn import workdir as run_dir
from jaxcnn.compress import apply, base, huffman, plugins, report, session
from jaxcnn.compress import storage
from jaxcnn.errors import CheckpointError, ConfigError
from jaxcnn.data import augment

STAGES = ('1_prune', '2_kmeans')


class DeepCompression(base.Method):
  """Registry entry only: the pipeline chains prune and kmeans runs, so this
  method never trains itself."""
  name = 'deep_compression'

  def init(self, params):
    raise ValueError('deep_compression runs as a pipeline of stages '
                     '(jaxcnn/compress/pipeline.py), not as one method')


base.register('deep_compression', lambda ccfg: DeepCompression(
    ccfg.deep_compression))


def stage_configs(config, workdir: str) -> list:
  """[(stage dir, config)] for the two training stages."""
  dc = config.compress.deep_compression
  out = []
  for name in STAGES:
    c = config.copy_and_resolve_references()
    prune = name == '1_prune'
    steps = dc.prune_steps if prune else dc.quantize_steps
    c.compress.method = 'prune' if prune else 'kmeans'
    c.num_train_steps = steps
    c.eval_every_steps = steps
    c.checkpoint_every_steps = max(1, min(config.checkpoint_every_steps,
                                          steps))
    c.log_every_steps = max(1, min(config.log_every_steps, steps))
    if not prune:
      c.init_from = os.path.join(workdir, STAGES[0])
      c.optim.learning_rate = config.optim.learning_rate * \
          dc.quantize_lr_scale
    out.append((os.path.join(workdir, name), c))
  return out


def _report(d: str) -> dict | None:
  path = os.path.join(d, 'compression_report.json')
  return json.load(open(path)) if os.path.exists(path) else None


def run(config, workdir: str) -> dict:
  """Runs (or resumes) the stages; returns {'params': final accuracy ...}
  like train.train_and_evaluate."""
  dc = config.compress.deep_compression
  if dc.prune_steps <= 0 or dc.quantize_steps <= 0:
    raise ConfigError('invalid config: compress.deep_compression.prune_steps '
                      'and quantize_steps must be > 0')
  os.makedirs(workdir, exist_ok=True)
  run_dir.write_config(config, workdir)
  for d, c in stage_configs(config, workdir):
    if _report(d) is not None:
      print(f'deep_compression: {d} is finished, skipped', flush=True)
      continue
    if d.endswith(STAGES[1]):  # the weights stage 1 exported
      c.init_from_weights = _report(c.init_from)['weights_used']
    print(f'deep_compression: stage {os.path.basename(d)}', flush=True)
    train.train_and_evaluate(c, d, plugins.from_config(c))
  rep = _report(workdir)
  if rep is None or not os.path.exists(os.path.join(workdir, 'model.jxcz')):
    rep = huffman_stage(config, workdir)
  else:
    print(f'deep_compression: {workdir} is finished', flush=True)
  acc = rep['accuracy']['compressed_after_finetune']
  return {'params': {'precision@1': acc}}


def evaluate_artifact(config, workdir: str) -> dict:
  """--mode=eval_once on a Deep Compression workdir: the final artifact
  (model.jxcz, Huffman-coded) on the whole test set."""
  path = os.path.join(workdir, 'model.jxcz')
  if not os.path.exists(path):
    raise CheckpointError(f'{path} not found: the Deep Compression run in '
                          f'{workdir} has not finished')
  variables, _ = storage.load(path)
  fn = session._logits_fn(experiment.build_model(config),
                          augment.spec_from_config(config.input))
  splits = experiment.load_splits(config)
  acc = session.accuracy(fn, variables, splits.x_test, splits.y_test)
  print(f'{path}: precision @ 1 = {acc:.3f} (Deep Compression artifact)',
        flush=True)
  return {'params': {'precision@1': acc, 'count': float(len(splits.y_test))}}


def _layer_bits(variables: dict) -> dict:
  """Per kernel: stream bits per nonzero of its Huffman encoding."""
  out = {}
  for name, w in storage.flatten(variables).items():
    if name.startswith('params/') and name.endswith('kernel'):
      arrays = huffman.encode_weights(w)
      if arrays is not None:
        out[report._layer(name)] = huffman.stream_bits(arrays)
  return out


def stage_table(stage_reps: list[dict], final: dict) -> dict:
  """Per layer and total: params, nonzeros and bytes at every stage."""
  pruned, quant = stage_reps
  rows = {}
  for layer, r in final['layers'].items():
    rows[layer] = {
        'params': r['params_before'], 'nonzeros': r['nonzeros'],
        'bytes_dense': r['bytes_dense'],
        'bytes_pruned': pruned['layers'].get(layer, {}).get(
            'bytes_compressed', 0),
        'bytes_quantized': quant['layers'].get(layer, {}).get(
            'bytes_compressed', 0),
        'bytes_huffman': r['bytes_compressed']}
  total = {'params': final['total']['params_before'],
           'nonzeros': final['total']['nonzeros'],
           'bytes_dense': final['total']['bytes_dense'],
           'bytes_pruned': pruned['total']['bytes_compressed'],
           'bytes_quantized': quant['total']['bytes_compressed'],
           'bytes_huffman': final['total']['bytes_compressed']}
  for r in list(rows.values()) + [total]:
    r['ratio'] = r['bytes_dense'] / max(r['bytes_huffman'], 1)
  acc = {'dense': pruned['accuracy']['dense'],
         'pruned': pruned['accuracy']['compressed_after_finetune'],
         'quantized': quant['accuracy']['compressed_after_finetune'],
         'huffman': final['accuracy']['compressed_after_finetune']}
  return {'layers': rows, 'total': total, 'accuracy': acc,
          'fine_tune_steps': {'prune': pruned['fine_tune_steps'],
                              'kmeans': quant['fine_tune_steps']}}


def stage_markdown(stages: dict, bits: dict) -> str:
  cols = ('params', 'nonzeros', 'bytes_dense', 'bytes_pruned',
          'bytes_quantized', 'bytes_huffman')
  lines = ['#### Deep Compression, stage by stage (bytes in each file)', '',
           '| layer | ' + ' | '.join(cols) + ' | index bits/nz | position '
           'bits/nz | dense/final |', '|---|' + '---:|' * (len(cols) + 3)]
  for name, r in list(stages['layers'].items()) + [('**total (files)**',
                                                    stages['total'])]:
    b = bits.get(name, {})
    extra = [f"{b['index_bits_per_nonzero']:.2f}" if b else '',
             f"{b['position_bits_per_nonzero']:.2f}" if b else '',
             f"{r['ratio']:.1f}x"]
    lines.append(f'| {name} | ' + ' | '.join(f'{r[c]:,}' for c in cols) +
                 ' | ' + ' | '.join(extra) + ' |')
  a = stages['accuracy']
  lines += ['', f"accuracy: dense {a['dense']:.4f} -> pruned {a['pruned']:.4f}"
            f" -> quantized {a['quantized']:.4f} -> Huffman "
            f"{a['huffman']:.4f} (fine-tuning steps {stages['fine_tune_steps']})",
            '']
  return '\n'.join(lines)


def huffman_stage(config, workdir: str) -> dict:
  """Stage 3: Huffman-code stage 2's artifact into WORKDIR/model.jxcz, load
  it back, check its logits and write the pipeline's report."""
  d1, d2 = (os.path.join(workdir, s) for s in STAGES)
  stage_reps = [_report(d1), _report(d2)]
  quant_vars, meta = storage.load(os.path.join(d2, 'model.jxcz'))
  dense_vars, dense_meta = storage.load(os.path.join(d1, 'dense.jxcz'))
  model_meta = session.artifact_meta(config, 'deep_compression')
  dense_bytes = storage.save(os.path.join(workdir, 'dense.jxcz'), dense_vars,
                             model_meta)
  path = os.path.join(workdir, 'model.jxcz')
  final_bytes = storage.save(path, quant_vars, model_meta, 'huffman',
                             config.compress.index_bits, zlib_header=True)
  loaded, _ = storage.load(path)
  exact = all(np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(quant_vars), jax.tree.leaves(loaded)))

  model = experiment.build_model(config)
  spec = augment.spec_from_config(config.input)
  shape = experiment.input_shape(config)
  splits = experiment.load_splits(config)
  fn = session._logits_fn(model, spec)
  x, y = splits.x_test, splits.y_test
  probe = x[:500]
  identical = bool(np.array_equal(np.asarray(fn(quant_vars, probe)),
                                  np.asarray(fn(loaded, probe))))
  acc = {'dense': stage_reps[0]['accuracy']['dense'],
         'compressed_before_finetune':
             stage_reps[0]['accuracy']['compressed_before_finetune'],
         'compressed_after_finetune': session.accuracy(fn, loaded, x, y)}
  dense_ms, comp_ms = session.latency_ms(fn, [dense_vars, loaded], x[:200])
  lat = {'dense_ms_per_image': dense_ms, 'compressed_ms_per_image': comp_ms,
         'note': 'the artifact decodes to dense arrays: no speed-up',
         'device': jax.default_backend()}
  rep = report.build(
      model_meta, dense_vars, loaded, dense_bytes, final_bytes,
      apply.count_macs(model, dense_vars, shape),
      apply.count_macs(model, loaded, shape), acc, lat,
      extra={'init_from': stage_reps[0]['init_from'],
             'fine_tune_steps': sum(r['fine_tune_steps'] for r in stage_reps),
             'artifact': 'model.jxcz',
             'roundtrip_identical_logits': identical,
             'roundtrip_identical_weights': exact,
             'stage_dirs': list(STAGES)})
  rep['stages'] = stage_table(stage_reps, rep)
  bits = _layer_bits(loaded)
  rep['stages']['stream_bits'] = bits
  report.write(workdir, rep)
  with open(os.path.join(workdir, 'compression_report.md'), 'a') as f:
    f.write('\n' + stage_markdown(rep['stages'], bits))
  print(report.markdown(rep) + '\n' + stage_markdown(rep['stages'], bits),
        flush=True)
  return rep
