"""Range, type and consistency checks of numeric and enum config fields.

Pure Python on the config alone (no JAX, no data), so experiment.validate can
reject an out-of-range value in a second instead of failing deep in training,
hanging, or silently training something else. Every message names the field,
the value and the valid range. compress.* ranges live in experiment's
_validate_compress; this module only checks that their floats are finite.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from jaxcnn.errors import ConfigError

# jax.random.key keeps the low 32 bits: seed 2**32 would silently repeat seed
# 0, and the data order (numpy SeedSequence) rejects negative seeds.
SEED_LIMIT = 2 ** 32
WEIGHTS = ('params', 'ema', 'auto')

# (field, minimum, minimum allowed?, maximum or None, maximum allowed?, note)
_INTS = (
    ('batch_size', 0, False, None, False, ''),
    ('eval_batch_size', 0, False, None, False, ''),
    ('num_train_steps', -1, True, None, False, ' (-1 or 0: use num_epochs)'),
    ('seed', 0, True, SEED_LIMIT, False, ''),
    ('input.pad', 0, True, None, False, ''),
    ('input.resize', 0, True, None, False, ' (0: off)'),
    ('input.crop', 0, True, None, False, ' (0: no crop)'),
    ('log_every_steps', 0, True, None, False, ' (0: only at the end)'),
    ('eval_every_steps', 0, True, None, False, ' (0: only at the end)'),
    ('checkpoint_every_steps', 0, True, None, False, ' (0: only at the end)'),
    ('summary_every_steps', 0, True, None, False, ' (0: off)'),
    # 0 would let orbax delete every checkpoint, the final one included.
    ('keep_checkpoints', 1, True, None, False, ''),
    ('dataset.image_size', 1, True, 8192, True, ''),
    ('dataset.workers', -1, True, 256, True, ' (0: in process, -1: auto)'),
)
_FLOATS = (
    ('num_epochs', 0.0, True, None, False, ''),
    ('optim.learning_rate', 0.0, False, None, False, ''),
    ('optim.momentum', 0.0, True, 1.0, False, ' (0: plain gradient descent)'),
    ('l2.rate', 0.0, True, None, False, ''),
    ('ema_decay', 0.0, True, 1.0, False, ' (0: off)'),
    ('input.brightness', 0.0, True, None, False, ' (0: off)'),
    ('distill.temperature', 0.0, False, None, False, ''),
    ('distill.hard_weight', 0.0, True, 1.0, True, ''),
)
# Read only by their schedule: checked only when it is the one in use.
_SCHEDULE_FLOATS = {
    'staircase_exp': (('optim.decay_rate', 0.0, False, 1.0, True, ''),
                      ('optim.decay_epochs', 0.0, False, None, False, '')),
    'discexp': (('optim.discexp_a', 0.0, False, 1.0, True, ''),
                ('optim.discexp_b', 0.0, False, None, False, '')),
    'cosine': (('optim.warmup_epochs', 0.0, True, None, False, ''),),
    'step_50_75': (('optim.decay_rate', 0.0, False, 1.0, True, ''),),
}
_CHOICES = (
    ('optim.optimizer', ('sgd', 'adam')),
    ('optim.schedule', ('constant', 'staircase_exp', 'discexp', 'cosine',
                        'step_50_75')),
    ('input.normalize', ('unit', 'per_image', 'mean_std',
                         'cifar10_pixel_mean')),
    ('l2.mode', ('none', 'loss', 'coupled')),
    ('precision', ('float32', 'bfloat16')),
    ('xla_cpu_conv', ('auto', 'onednn', 'onednn_bf16', 'eigen', 'ynnpack')),
    # Anything but 'ema'/'auto' would silently mean 'params'.
    ('init_from_weights', WEIGHTS),
    ('weights', WEIGHTS),
    ('distill.teacher_weights', WEIGHTS),
    ('distill.mode', ('frozen', 'joint')),
    ('distill.loss', ('kd', 'logits')),
    ('dataset.resize_mode', ('center_crop', 'squash')),
    ('dataset.on_bad_image', ('skip', 'fail')),
    ('dataset.verify_images', ('header', 'full', 'none')),
)


def bad(msg: str):
  raise ConfigError(f'invalid config: {msg}')


def get(config, field: str) -> Any:
  for key in field.split('.'):
    config = config[key]
  return config


def interval(lo, lo_ok: bool, hi, hi_ok: bool) -> str:
  if hi is None:
    return f'{">=" if lo_ok else ">"} {lo}'
  hi = '2**32' if hi == SEED_LIMIT else hi
  return f'in {"[" if lo_ok else "("}{lo}, {hi}{"]" if hi_ok else ")"}'


def check_int(field: str, value, lo, lo_ok=True, hi=None, hi_ok=False,
              note='') -> None:
  """An int (not a bool: ml_collections lets True into int fields) in range."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    bad(f'{field} must be an integer {interval(lo, lo_ok, hi, hi_ok)}{note}, '
        f'got {value!r}')
  _check_range(field, value, lo, lo_ok, hi, hi_ok, note)


def check_float(field: str, value, lo, lo_ok=True, hi=None, hi_ok=False,
                note='') -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    bad(f'{field} must be a number {interval(lo, lo_ok, hi, hi_ok)}{note}, '
        f'got {value!r}')
  if not math.isfinite(value):
    bad(f'{field} must be finite, got {value!r}')
  _check_range(field, value, lo, lo_ok, hi, hi_ok, note)


def _check_range(field, value, lo, lo_ok, hi, hi_ok, note) -> None:
  above = value >= lo if lo_ok else value > lo
  below = hi is None or (value <= hi if hi_ok else value < hi)
  if not (above and below):
    bad(f'{field} must be {interval(lo, lo_ok, hi, hi_ok)}{note}, got '
        f'{value!r}')


def check_choice(field: str, value, choices: tuple[str, ...]) -> None:
  if value not in choices:
    bad(f'{field} {value!r} not in {choices}')


def check_finite_floats(node, prefix: str = '') -> None:
  """No NaN/Inf anywhere, model overrides, tuples and compress.* included:
  a NaN slips through every `x < lo` comparison and inf through int()."""
  items = node.items() if hasattr(node, 'items') else enumerate(node)
  for key, value in items:
    name = f'{prefix}.{key}' if isinstance(key, str) else f'{prefix}[{key}]'
    name = name.lstrip('.')
    if hasattr(value, 'items') or isinstance(value, (list, tuple)):
      check_finite_floats(value, name)
    elif isinstance(value, float) and not math.isfinite(value):
      bad(f'{name} must be finite, got {value!r}')


def check_fields(config) -> None:
  """Every table above: enums first, then the ranges."""
  for field, choices in _CHOICES:
    check_choice(field, get(config, field), choices)
  for field, *limits in _INTS:
    check_int(field, get(config, field), *limits)
  for field, *limits in (_FLOATS +
                         _SCHEDULE_FLOATS.get(config.optim.schedule, ())):
    check_float(field, get(config, field), *limits)
  for key, value in config.model.items():  # model field overrides
    if key.endswith('dropout_rate'):
      check_float(f'model.{key}', value, 0.0, True, 1.0, False)


def check_length(config) -> None:
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    bad(f'num_epochs={config.num_epochs} and num_train_steps='
        f'{config.num_train_steps} train nothing; set num_epochs > 0 or '
        'num_train_steps > 0')
  o = config.optim
  if (o.schedule == 'cosine' and config.num_train_steps <= 0 and
      o.warmup_epochs >= config.num_epochs):
    bad(f'optim.warmup_epochs={o.warmup_epochs} must be < num_epochs='
        f'{config.num_epochs}: the cosine decay would never start')


def check_optimizer(config) -> None:
  """Settings the optimizer would silently ignore."""
  o = config.optim
  if o.nesterov and (o.optimizer != 'sgd' or o.momentum == 0):
    bad(f'optim.nesterov=True needs optimizer sgd with momentum > 0 (got '
        f'{o.optimizer!r}, momentum {o.momentum}); set optim.nesterov=False')
  if config.l2.mode == 'none' and config.l2.rate > 0:
    bad(f"l2.rate={config.l2.rate} is ignored with l2.mode='none'; set "
        "l2.mode to 'loss' or 'coupled', or l2.rate=0")


def check_input(inp, channels: int) -> None:
  """input.* tuples and combinations; `channels` of the dataset's images."""
  if inp.random_crop and not inp.crop:
    bad('input.random_crop=True needs input.crop > 0 (the crop size); '
        'with crop 0 nothing is cropped')
  contrast = tuple(inp.contrast)
  if (len(contrast) != 2 or not all(_is_real(v) for v in contrast)
      or not 0 <= contrast[0] <= contrast[1]):
    bad(f'input.contrast must be (lo, hi) with 0 <= lo <= hi, got '
        f'{inp.contrast!r} ((1, 1): off)')
  for field in ('mean', 'std'):
    values = tuple(inp[field])
    if (len(values) not in (1, channels)
        or not all(_is_real(v) for v in values)):
      bad(f'input.{field} must be 1 or {channels} numbers (one per '
          f'channel), got {inp[field]!r}')
  if not all(s > 0 for s in inp.std):
    bad(f'input.std values must be > 0, got {inp.std!r}')


def _is_real(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_streaming(config) -> None:
  """dataset.* of the streaming datasets (imagenet2012, imagefolder)."""
  d = config.dataset
  if d.name == 'imagefolder' and not d.root:
    bad("dataset.name='imagefolder' needs dataset.root=ROOT (a folder with "
        'train/<class>/* and val/<class>/*)')
  if d.name not in ('imagefolder', 'imagenet2012'):
    return
  size = config.input.resize or d.image_size + 2 * config.input.pad
  if config.input.crop > size:
    bad(f'input.crop={config.input.crop} is larger than the {size}x{size} '
        f'images (dataset.image_size {d.image_size}, input.pad '
        f'{config.input.pad}, input.resize {config.input.resize})')
  if config.input.device_data:
    bad('input.device_data=True keeps a whole split on the device; '
        f'{d.name} is streamed: set input.device_data=False')


def check(config, channels: int) -> None:
  """All checks of this module; the dataset's image `channels` sizes the
  per-channel input.mean/std."""
  check_finite_floats(config)
  check_fields(config)
  check_length(config)
  check_optimizer(config)
  check_input(config.input, channels)
  check_streaming(config)
