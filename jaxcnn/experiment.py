"""Builds what train, eval and predict share from one config: validated
settings, the model, the input spec and the state template.

Validation runs before any data loading or compilation, so a typo in a config
costs a second, not a decoded dataset and an XLA compile.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxcnn import config_checks, models, optim, parallel
from jaxcnn import plugins as plugins_lib
from jaxcnn import state as state_lib
from jaxcnn.data import augment, datasets, sources, streaming
from jaxcnn.errors import ConfigError
from jaxcnn.losses import param_mask, path_str
from jaxcnn.ops import cpu_options


def model_kwargs(config) -> dict[str, Any]:
  """config.model minus 'name' are the model's field overrides."""
  kw = {k: v for k, v in config.model.items() if k != 'name'}
  return {k: (v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v)
          for k, v in kw.items()}


def build_model(config, conv: str = 'xla'):
  """The config's model. conv: 'onednn' sends the convolutions of models
  with a `conv` field through jaxcnn/ops/conv.py (build() decides, from the
  mesh); 'xla' (the default: export, analysis, compression) keeps lax's."""
  info = streaming.dataset_info(config)
  kw = model_kwargs(config)
  if conv != 'xla' and models.has_field(config.model.name, 'conv'):
    kw['conv'] = conv
  try:
    return models.get_model(config.model.name, num_classes=info.num_classes,
                            **kw)
  except TypeError as e:  # an override that is not a field of the model
    raise ConfigError(f'config.model does not fit model '
                      f'{config.model.name!r}: {e}') from None


def input_shape(config) -> tuple[int, int, int]:
  """Shape of one preprocessed example, as the model sees it."""
  h, _, c = streaming.dataset_info(config).image_shape
  size = augment.spec_from_config(config.input).output_size(h)
  return (size, size, c)


def validate(config) -> None:
  """Raises ConfigError naming the offending field; no data, no compile.

  Cheap checks first (names, then every field's range: config_checks,
  parallel.check_config), then the model's shapes on the config's input.
  Plugins check their own sections when they are built (e.g.
  jaxcnn.compress.plugins.from_config)."""
  def bad(msg):
    raise ConfigError(f'invalid config: {msg}')
  if config.model.name not in models.list_models():
    bad(f'unknown model {config.model.name!r}; valid names: '
        f'{", ".join(models.list_models())}')
  if config.dataset.name not in datasets.DATASETS:
    bad(f'unknown dataset {config.dataset.name!r}; valid names: '
        f'{", ".join(sorted(datasets.DATASETS))}')
  channels = datasets.get_info(config.dataset.name).image_shape[2]
  config_checks.check(config, channels)  # dataset.root etc. before reading it
  parallel.check_config(config)
  h = streaming.dataset_info(config).image_shape[0]
  size = (config.input.resize or h + 2 * config.input.pad)
  if config.input.crop > size:
    bad(f'input.crop={config.input.crop} is larger than the {size}x{size} '
        f'image (dataset {config.dataset.name}, pad {config.input.pad}, '
        f'resize {config.input.resize})')
  try:
    re.compile(config.l2.include)
  except re.error as e:
    bad(f'l2.include is not a valid regex: {e}')
  _validate_shapes(config, bad)


def _validate_shapes(config, bad):
  """Shapes only: catches bad model overrides and an l2 regex matching
  nothing. Returns the parameter shapes."""
  model = build_model(config)
  try:
    shapes = jax.eval_shape(
        functools.partial(model.init, train=False),
        {'params': jax.random.key(0), 'dropout': jax.random.key(0)},
        jax.ShapeDtypeStruct((1, *input_shape(config)), 'float32'))
  except Exception as e:
    bad(f'model {config.model.name!r} cannot take input '
        f'{input_shape(config)}: {e}')
  if config.l2.mode != 'none' and config.l2.rate > 0:
    mask = param_mask(shapes['params'], config.l2.include)
    if not any(jax.tree.leaves(mask)):
      names = [path_str(p) for p, _ in
               jax.tree_util.tree_flatten_with_path(shapes['params'])[0]]
      bad(f'l2.include={config.l2.include!r} matches no kernel; parameter '
          f'paths are: {", ".join(names)}')
  return shapes['params']


@dataclasses.dataclass
class Plan:
  """Step counts derived from the config and the dataset size."""
  steps_per_epoch: int
  total_steps: int


def plan(config, num_train: int) -> Plan:
  spe = num_train // config.batch_size
  if spe == 0:
    raise ConfigError(f'batch_size={config.batch_size} exceeds the '
                      f'{num_train} training examples')
  total = (config.num_train_steps if config.num_train_steps > 0 else
           int(config.num_epochs * spe))
  return Plan(spe, total)


def make_optimizer(config, model, p: Plan):
  """(tx, schedule) for this config; `model` gives the parameter paths."""
  schedule = optim.make_schedule(config, p.steps_per_epoch, p.total_steps,
                                 config.batch_size)
  return optim.make_tx(config, params_shape(config, model), schedule), schedule



def params_shape(config, model):
  shape = input_shape(config)
  return jax.eval_shape(functools.partial(model.init, train=False),
                        jax.random.key(0),
                        jax.ShapeDtypeStruct((1, *shape), 'float32'))['params']


def init_state(config, model, tx, mesh):
  """The initial TrainState, created directly in its sharding: replicated,
  except leaves matching config.shard_params, split over mesh axis 'model'
  (so a large fc layer never exists whole on one device)."""
  create = functools.partial(state_lib.create, model, tx,
                             image_shape=input_shape(config),
                             use_ema=config.ema_decay > 0)
  key = jax.random.key(config.seed)
  shardings = parallel.state_shardings(mesh, jax.eval_shape(create, key),
                                       config.shard_params)
  return jax.jit(create, out_shardings=shardings)(key)


def plugin_names(config) -> list[str]:
  """The plugins this config needs, by the sections it sets: 'compress'
  (compress.method, or init_from: a fine-tune of another run) and
  'distill' (a frozen teacher or a joint pair)."""
  names = []
  if config.compress.method or config.init_from:
    names.append('compress')
  d = config.distill
  if d.teacher_workdir or d.mode == 'joint':
    names.append('distill')
  return names


def build(config, mesh, plugins=(), p: Plan | None = None,
          restore_only: bool = False) -> plugins_lib.Build:
  """Model, optimizer and state (template) after every plugin's set-up.
  `p` None: a one-step plan (shapes don't depend on the schedule's length),
  for readers that only restore."""
  conv = cpu_options.model_conv(config.xla_cpu_conv, mesh,
                                strict=not restore_only)
  model = plugins_lib.wrap_model(plugins, build_model(config, conv))
  tx, schedule = make_optimizer(config, model, p or Plan(1, 1))
  state = init_state(config, model, tx, mesh)
  return plugins_lib.run_setup(plugins, plugins_lib.Build(
      config, model, tx, schedule, state, mesh, restore_only))


def state_template(config, mesh):
  """A state with this config's shapes, to restore checkpoints into. Shapes
  don't depend on the schedule's length, so a one-step plan serves."""
  model = build_model(config)
  tx, _ = make_optimizer(config, model, Plan(1, 1))
  return init_state(config, model, tx, mesh)


def load_splits(config) -> sources.Splits:
  """The config's dataset through every source it names (local dir, TFDS
  copy, download): the one call train, eval, plots and compress share."""
  return sources.load(config.dataset.name, data_dir=config.data_dir,
                      cache_dir=config.cache_dir,
                      tfds_data_dir=config.tfds_data_dir,
                      allow_download=config.dataset.allow_download)


def train_subset(config, count: int) -> np.ndarray:
  """`count` training images, uint8 as stored, a seeded random subset in
  index order (calibration for quantization and export)."""
  x = load_splits(config).x_train
  pick = np.random.default_rng(config.seed).permutation(len(x))[:count]
  return x[np.sort(pick)]
