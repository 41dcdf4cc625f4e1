"""What an export is built from, and how each compression family maps.

A plain training workdir exports its latest checkpoint (convert.load_run).
A compression output workdir (config.compress.method set, or a frozen
distillation: config.distill.teacher_workdir) exports its artifact,
WORKDIR/model.jxcz, through compress.artifact_model: the exact inference
variables the compression run measured, run by the unchanged model code.

Per family (docs/export.md has the measurements):
  svd               factorised layers: a low-rank Dense is two matmuls
                    (x @ U @ V), a separable conv two convs;
  filter_prune      the compact network (removed filters are gone);
  distill           the student network;
  prune             dense kernels holding the zeros (LiteRT's sparse tensors
                    were measured, see docs/export.md);
  kmeans, pq, qcnn, deep_compression
                    the clustered / product-quantized weights as float
                    values (K distinct values per layer): LiteRT stores
                    float or int8 tensors, not codebooks; the file compresses
                    under the app's zip/gzip (sidecar 'gzip_bytes');
  int8, qat         full-integer LiteRT: jaxcnn's int8 weight codes
                    (dequantized, re-quantized by the converter to the same
                    codes), activation scales from the converter's
                    calibration; StableHLO: jaxcnn's own integer path with
                    its own scales;
  binary, bwn, xnor float +-1 / +-alpha weights (xnor: its input
                    binarisation as float ops); stock LiteRT has no
                    bit-packed kernels.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import numpy as np

from jaxcnn.compress import artifact_model
from jaxcnn.data import augment
from jaxcnn.errors import CheckpointError
from jaxcnn.export import FORMATS, SUPPORTED, ExportError

ARTIFACT = 'model.jxcz'
_FLOAT = dict(SUPPORTED)  # every format and quantization of a plain run
_INT = {'stablehlo': ('none',), 'tflite': ('int8',)}
MAPPING = {
    'svd': ('factorised layers: each low-rank Dense as two matmuls x@U@V, '
            'each separable conv as a vertical and a horizontal conv', _FLOAT),
    'filter_prune': ('the compact network: pruned filters removed', _FLOAT),
    'distill': ('the student network', _FLOAT),
    'prune': ('dense kernels holding the zeros (no LiteRT sparse tensors: '
              'measured no faster, docs/export.md)', _FLOAT),
    'kmeans': ('clustered float weights (K distinct values per layer; LiteRT '
               'stores no codebooks: compress the file with zip/gzip)', _FLOAT),
    'deep_compression': ('pruned and clustered float weights (LiteRT stores '
                         'no codebooks or Huffman codes: compress the file '
                         'with zip/gzip)', _FLOAT),
    'pq': ('product-quantized weights as float values (LiteRT stores no '
           'codebooks)', _FLOAT),
    'qcnn': ('product-quantized weights as float values (LiteRT stores no '
             'codebooks)', _FLOAT),
    'int8': ('full-integer int8', _INT),
    'qat': ('full-integer int8', _INT),
    'binary': ('float +-1 weights', _FLOAT),
    'bwn': ('float +-alpha weights', _FLOAT),
    'xnor': ('float +-alpha weights, input binarisation as float ops', _FLOAT),
}
INT_METHODS = ('int8', 'qat')
BINARY_NOTE = ('stock LiteRT cannot run bit-packed binary kernels (Larq '
               'Compute Engine can); exported as float +-alpha weights, so '
               'no smaller or faster than a float net (int8 stores them '
               'exactly); jaxcnn\'s bit-packed path (docs/binary.md) stays '
               'the binary runtime')


@dataclasses.dataclass
class Run:
  """What an export needs from a workdir: the function and its provenance."""
  workdir: str
  config: Any
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]  # H, W, C of the stored uint8 images
  step: int | None
  weights: str                       # 'ema' or 'params', as resolved
  fn: Callable[[jax.Array], jax.Array]  # uint8 [N,H,W,C] -> f32 [N,K]
  input_spec: augment.InputSpec | None = None
  compression: dict | None = None    # artifact exports: method, mapping...


def method_of(config) -> str:
  """'' for a plain training run, else the compression method."""
  method = config.compress.method
  distill = config.get('distill')
  if not method and distill is not None and distill.get('teacher_workdir') \
      and distill.get('mode', 'frozen') == 'frozen':
    return 'distill'
  return method


def supported_text(method: str) -> str:
  pairs = MAPPING[method][1]
  return '; '.join(f'{f} --quantize {"/".join(q)}' for f, q in pairs.items())


def check_pair(method: str, fmt: str, quantize: str, workdir: str) -> None:
  """One-line ExportError for a method the exporter has no mapping for or
  a format/quantize pair the method's artifact cannot honestly become."""
  if method not in MAPPING:
    raise ExportError(
        f'{workdir}: compress.method={method!r} has no export mapping; '
        f'supported: plain training workdirs and {", ".join(MAPPING)}')
  pairs = MAPPING[method][1]
  if fmt in FORMATS and quantize not in pairs.get(fmt, ()):
    why = (' (jaxcnn\'s int8 net is integer: a float LiteRT file would not '
           'be it)' if method in INT_METHODS else '')
    raise ExportError(
        f'{workdir}: the {method} artifact cannot export as --format {fmt} '
        f'--quantize {quantize}{why}; supported: {supported_text(method)}')


def dequantized(variables: dict) -> dict:
  """int8/qat inference variables with each {'kernel_q', 'kernel_scale',
  'act_scale', 'act_bits'} layer as a float kernel kernel_q * kernel_scale:
  the float net the converter quantizes back to the same weight codes
  (per-channel symmetric, max |code| 127 per channel)."""
  def walk(node):
    if not isinstance(node, dict):
      return node
    if 'kernel_q' in node:
      out = {k: v for k, v in node.items() if k not in (
          'kernel_q', 'kernel_scale', 'act_scale', 'act_bits')}
      out['kernel'] = (np.asarray(node['kernel_q'], np.float32) *
                       np.asarray(node['kernel_scale'], np.float32))
      return out
    return {k: walk(v) for k, v in node.items()}
  return {k: walk(v) for k, v in variables.items()}


def _report(workdir: str) -> dict:
  try:
    with open(os.path.join(workdir, 'compression_report.json')) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def load_artifact_run(workdir: str, config, method: str, fmt: str,
                      quantize: str, weights: str = 'auto') -> Run:
  """WORKDIR/model.jxcz as the deployable function of `fmt`/`quantize`."""
  check_pair(method, fmt, quantize, workdir)
  path = os.path.join(workdir, ARTIFACT)
  if not os.path.isfile(path):
    raise CheckpointError(f'no {ARTIFACT} in {workdir}: the {method} run has '
                          'not finished (its last step writes the artifact); '
                          'resume it, then export')
  am = artifact_model.load(path, config)
  if am.method != method:
    raise CheckpointError(f'{path} was written by method {am.method!r}, '
                          f'{workdir}/config.json names {method!r}')
  rep = _report(workdir)
  used = rep.get('weights_used', 'params')
  if weights not in ('auto', used):
    raise ExportError(f'--weights {weights}: {path} holds the {used} weights '
                      'its compression run chose; use --weights auto')
  variables = am.variables
  comp = {'method': method, 'mapping': MAPPING[method][0],
          'artifact': os.path.abspath(path),
          'artifact_bytes': os.path.getsize(path)}
  if method in INT_METHODS:
    bits = {k: am.meta.get(k) for k in ('weight_bits', 'act_bits')}
    if fmt == 'tflite':
      variables = dequantized(variables)
      comp['int8_scales'] = (
          f'weights: jaxcnn\'s {bits["weight_bits"]}-bit per-channel codes '
          '(dequantized; the converter re-quantizes them per channel); '
          'activations: the converter\'s calibration (8-bit, per tensor, '
          'asymmetric), not jaxcnn\'s '
          f'{bits["act_bits"]}-bit symmetric act_scale')
    else:
      comp['int8_scales'] = ('jaxcnn\'s own: int8 x int8 -> int32 layers '
                             'with its per-channel weight and per-layer '
                             'activation scales (compress/fixed_point.py)')
    comp.update(bits)
  if method in ('binary', 'bwn', 'xnor'):
    comp['note'] = BINARY_NOTE
  logits = am.logits

  def fn(images):
    return jax.nn.softmax(logits(variables, images))
  step = rep.get('fine_tune_steps')
  return Run(workdir, config, tuple(am.info.class_names),
             tuple(am.info.image_shape), None if step is None else int(step),
             used, fn, am.input_spec, comp)
