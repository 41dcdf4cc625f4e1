"""A compression artifact (.jxcz) as a runnable model, with no workdir code.

  am = artifact_model.load('OUT/model.jxcz')       # config.json beside it
  probs = am.predict(images_uint8)                 # [N, K] float32

`load` decodes the file (storage.load: pruned, shared, factorised,
compacted, int8 or bit-packed leaves, all back to the arrays the inference
path runs on), rebuilds the Flax module from the artifact's metadata
('model', 'model_kwargs', 'dataset', 'method'; xnor artifacts also get their
input binarisation, binary.inference_model) and the eval preprocessing from
meta['input'] when the file records it, else from the `config` passed in,
else from the config.json beside the file. The forward pass is exactly the
one compression runs use (session._logits_fn): uint8 images ->
augment.preprocess_eval -> binary.apply_any (apply.apply: the unchanged
model code on whatever shapes the artifact holds) -> logits.

Shared by `python -m jaxcnn.predict --model FILE.jxcz` and
`python -m jaxcnn.export` (jaxcnn/export/convert.py builds its deployable
function from `logits`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from jaxcnn import models
from jaxcnn import workdir as run_dir
from jaxcnn.compress import binary, storage
from jaxcnn.data import augment, datasets
from jaxcnn.errors import CheckpointError

# Artifact metadata every method writes (session.finish, distill,
# pipeline.huffman_stage).
REQUIRED_META = ('model', 'model_kwargs', 'dataset', 'input_shape', 'method')


@dataclasses.dataclass
class ArtifactModel:
  path: str
  meta: dict
  variables: dict            # {'params', 'batch_stats'?, 'compress'?}
  model: Any                 # flax module (xnor: binary.InterceptedModel)
  info: datasets.DatasetInfo
  input_spec: augment.InputSpec
  logits_fn: Callable[[dict, Any], jax.Array]  # jitted (variables, uint8)

  @property
  def method(self) -> str:
    return self.meta['method']

  def logits(self, variables: dict, images) -> jax.Array:
    """Un-jitted forward (for tracing into jax.export / jax2tf)."""
    return binary.apply_any(self.model, variables,
                            augment.preprocess_eval(images, self.input_spec))

  def predict(self, images) -> np.ndarray:
    """uint8 [N, H, W, C] as stored -> float32 class probabilities."""
    logits = self.logits_fn(self.variables, np.asarray(images))
    return np.asarray(jax.nn.softmax(logits), np.float32)


def _spec(path: str, meta: dict, config) -> augment.InputSpec:
  if isinstance(meta.get('input'), dict):
    return augment.spec_from_config(ml_collections.ConfigDict(meta['input']))
  if config is None:
    where = os.path.dirname(os.path.abspath(path))
    config = run_dir.read_config(where)
    if config is None:
      raise CheckpointError(
          f'{path}: the artifact does not record its eval preprocessing and '
          f'there is no config.json beside it in {where}; keep the file in '
          'its compression workdir or pass the run\'s config')
  try:
    return augment.spec_from_config(config.input)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    raise CheckpointError(f'{path}: the config has no usable input section '
                          f'({type(e).__name__}: {e})') from None


def build_model(path: str, meta: dict):
  """The Flax module of an artifact's metadata (xnor: input binarisation)."""
  missing = [k for k in REQUIRED_META if k not in meta]
  if missing:
    raise CheckpointError(f'{path}: artifact metadata lacks '
                          f'{", ".join(missing)}; re-run the compression')
  if meta['dataset'] not in datasets.DATASETS:
    raise CheckpointError(f'{path}: unknown dataset {meta["dataset"]!r}')
  info = datasets.get_info(meta['dataset'])
  try:
    model = models.get_model(meta['model'], num_classes=info.num_classes,
                             **dict(meta['model_kwargs'] or {}))
  except (KeyError, TypeError, ValueError) as e:
    raise CheckpointError(f'{path}: cannot build model {meta["model"]!r} '
                          f'from the artifact metadata: {e}') from None
  return binary.inference_model(model, meta), info


def load(path: str, config=None) -> ArtifactModel:
  """The artifact at `path` ready to run; ArtifactError (storage) for a
  damaged file, CheckpointError for one that cannot be run."""
  variables, meta = storage.load(path)
  model, info = build_model(path, meta)
  spec = _spec(path, meta, config)
  am = ArtifactModel(path, meta, variables, model, info, spec, None)
  am.logits_fn = jax.jit(am.logits)
  return am
