"""The model's call graph, and physical removal of pruned filters.

Graph: the leaf modules of one inference pass in call order (from
flops.layer_stats). A prunable layer is a Conv whose output reaches the next
weight layer (Conv/Dense) through channel-preserving ops only (ReLU, pooling,
BatchNorm, LRN), which holds for the sequential nets (LeNet-5, simple_cnn,
the TF tutorial, AlexNet). Residual and grouped nets are refused: removing a
channel there needs every producer of a residual sum pruned alike.

compact(): for each pruned conv with kept filters `keep`
  * conv kernel [..., out] and bias -> [..., keep];
  * BatchNorm after it: scale, bias, mean, var -> [keep];
  * the consumer: a Conv's input axis -> keep; a Dense after the flatten has
    rows ordered (h, w, c) with c fastest, so rows reshape to
    [h*w, C, out] and take [:, keep, :];
  * LRN between them: its window runs across channels, so in the shrunken
    tensor channel i would see different neighbours than in the original.
    We store `keep` for that LRN and apply.py sums over the channels whose
    *original* indices lie within the window: exactly the masked net (the
    removed channels were zero, so they added nothing). A plain LRN over the
    compacted channels would be a different function; fine-tuning could
    absorb it, but then the smaller net is no longer the masked one.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import numpy as np

from jaxcnn.models import flops

_WEIGHT_KINDS = ('Conv', 'Dense', 'ConvLocal', 'MaskedConv')
# Blocks whose outputs are sums/concats of branches (ResNet, MobileNetV2,
# ShuffleNetV2): a channel there has several producers.
_BRANCHING_KINDS = ('BasicBlock', 'InvertedResidual', 'ShuffleUnit')


@dataclasses.dataclass
class Layer:
  path: str
  kind: str
  consumer: str | None = None       # next weight layer
  consumer_kind: str | None = None
  bns: list = dataclasses.field(default_factory=list)
  lrns: list = dataclasses.field(default_factory=list)
  ok: bool = True                   # structurally prunable
  why: str = ''


class Graph:
  def __init__(self, model: nn.Module, input_shape):
    stats = flops.layer_stats(model, input_shape)
    paths = [s.path for s in stats]
    leaves = [s for s in stats if s.path and not any(
        q.startswith(s.path + '/') for q in paths)]
    self.layers: list[Layer] = []
    current = None
    for s in leaves:
      if s.kind in _WEIGHT_KINDS:
        if current is not None and current.consumer is None:
          current.consumer, current.consumer_kind = s.path, s.kind
        current = Layer(s.path, s.kind)
        self.layers.append(current)
      elif current is not None and s.kind == 'BatchNorm':
        current.bns.append(s.path)
      elif current is not None and s.kind == 'LRN':
        current.lrns.append(s.path)
      elif current is not None and s.params:  # unknown layer with weights
        current.ok, current.why = False, f'followed by {s.kind} {s.path}'
    residual = any(s.kind in _BRANCHING_KINDS for s in stats)
    for layer in self.layers:
      if residual:
        layer.ok, layer.why = False, 'residual/branching network'
      elif layer.kind != 'Conv':
        layer.ok, layer.why = False, f'{layer.kind} is not a Conv'
      elif layer.consumer is None:
        layer.ok, layer.why = False, 'last layer (its outputs are the logits)'
      elif layer.consumer_kind not in ('Conv', 'Dense'):
        layer.ok, layer.why = False, f'consumer is a {layer.consumer_kind}'
    self.by_path = {l.path: l for l in self.layers}

  def prunable(self, include: str, exclude: str = '') -> list[Layer]:
    import re
    inc, exc = re.compile(include), re.compile(exclude) if exclude else None
    chosen = [l for l in self.layers if inc.search(l.path) and not (
        exc and exc.search(l.path))]
    bad = [f'{l.path} ({l.why})' for l in chosen if not l.ok]
    if bad:
      raise ValueError('cannot remove filters of: ' + '; '.join(bad))
    if not chosen:
      raise ValueError(f'filter_prune.include={include!r} matches no layer; '
                       f'layers: {", ".join(self.by_path)}')
    return chosen


def _get(tree, path):
  for p in path.split('/'):
    tree = tree[p]
  return tree


def compact(graph: Graph, params, batch_stats, keep: dict):
  """(params, batch_stats, extra) of the physically smaller network.

  `extra` is the 'compress' variable collection: {lrn_path: {'keep': idx}}.
  """
  params = jax.tree.map(np.asarray, params)
  batch_stats = jax.tree.map(np.asarray, batch_stats or {})
  extra: dict = {}
  for path, idx in keep.items():
    layer = graph.by_path[path]
    idx = np.asarray(idx)
    node = _get(params, path)
    orig = node['kernel'].shape[-1]
    node['kernel'] = node['kernel'][..., idx]
    if 'bias' in node:
      node['bias'] = node['bias'][idx]
    for bn in layer.bns:
      for tree in (params, batch_stats):
        try:
          bn_node = _get(tree, bn)
        except KeyError:
          continue
        for k in list(bn_node):
          bn_node[k] = bn_node[k][idx]
    cons = _get(params, layer.consumer)
    k = cons['kernel']
    if layer.consumer_kind == 'Conv':
      cons['kernel'] = k[..., idx, :]
    else:  # Dense after flatten: rows (h, w, c) with c fastest
      if k.shape[0] % orig:
        raise ValueError(f'{layer.consumer}: {k.shape[0]} inputs are not a '
                         f'multiple of the {orig} channels of {path}')
      cons['kernel'] = k.reshape(-1, orig, k.shape[-1])[:, idx, :].reshape(
          -1, k.shape[-1])
    for lrn in layer.lrns:
      node = extra
      for p in lrn.split('/'):
        node = node.setdefault(p, {})
      node['keep'] = idx.astype(np.int32)
  return params, batch_stats, extra
