"""On-device preprocessing and the TF CIFAR-10 tutorial's distortions.

Runs inside the jitted step on uint8 batches: per-example keys, no host work.
Brightness and contrast act on float pixels in 0..255, as in the tutorial
(tf.cast to float32, then tf.image.random_*), without clipping.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """Static preprocessing description, built from `config.input`."""
  pad: int = 0             # zero padding on each side, applied first
  resize: int = 0          # bilinear resize to resize x resize (0: keep)
  crop: int = 0            # output crop size (0: no crop)
  random_crop: bool = False  # train: random crop; eval always crops centrally
  flip: bool = False       # train: random left-right flip
  brightness: float = 0.0  # train: max |delta| on 0..255 pixels
  contrast: tuple[float, float] = (1.0, 1.0)  # train: factor range
  normalize: str = 'unit'  # 'unit' (x/255), 'per_image', or 'mean_std'
  mean: tuple[float, ...] = ()  # per-channel, 0..255 units, for 'mean_std'
  std: tuple[float, ...] = ()

  def output_size(self, hw: int) -> int:
    hw = hw + 2 * self.pad
    hw = self.resize or hw
    return self.crop or hw


def adjust_brightness(x: jax.Array, delta: jax.Array) -> jax.Array:
  return x + delta


def adjust_contrast(x: jax.Array, factor: jax.Array) -> jax.Array:
  """tf.image.adjust_contrast: (x - mean) * factor + mean, per channel."""
  mean = jnp.mean(x, axis=(-3, -2), keepdims=True)
  return (x - mean) * factor + mean


def per_image_standardization(x: jax.Array) -> jax.Array:
  """(x - mean) / max(std, 1/sqrt(N)) over each image's H*W*C values.

  Written as a multiply by rsqrt(max(var, 1/N)), the same number: exported
  to full-integer LiteRT the division became an int8 DIV that fails on a
  constant (all-black) image and ran 3.3x slower than fp32 (docs/export.md).
  """
  n = x.shape[-3] * x.shape[-2] * x.shape[-1]
  mean = jnp.mean(x, axis=(-3, -2, -1), keepdims=True)
  var = jnp.var(x, axis=(-3, -2, -1), keepdims=True)
  return (x - mean) * jax.lax.rsqrt(jnp.maximum(var, 1.0 / n))


def central_crop(x: jax.Array, size: int) -> jax.Array:
  """Matches tf.image.resize_with_crop_or_pad when cropping (offset floors)."""
  h, w = x.shape[-3], x.shape[-2]
  if size > h or size > w:
    raise ValueError(f'crop {size} is larger than the {h}x{w} image')
  top, left = (h - size) // 2, (w - size) // 2
  return x[..., top:top + size, left:left + size, :]


def _random_crop_one(key, img, size):
  h, w = img.shape[0], img.shape[1]
  kh, kw = jax.random.split(key)
  top = jax.random.randint(kh, (), 0, h - size + 1)
  left = jax.random.randint(kw, (), 0, w - size + 1)
  return jax.lax.dynamic_slice(img, (top, left, 0), (size, size, img.shape[2]))


def _distort_one(key, img, spec: InputSpec):
  k_crop, k_flip, k_bright, k_contrast = jax.random.split(key, 4)
  if spec.crop and spec.random_crop:
    img = _random_crop_one(k_crop, img, spec.crop)
  elif spec.crop:
    img = central_crop(img, spec.crop)
  if spec.flip:
    img = jnp.where(jax.random.bernoulli(k_flip), img[:, ::-1, :], img)
  if spec.brightness:
    img = adjust_brightness(img, jax.random.uniform(
        k_bright, (), minval=-spec.brightness, maxval=spec.brightness))
  if tuple(spec.contrast) != (1.0, 1.0):
    lo, hi = spec.contrast
    img = adjust_contrast(img, jax.random.uniform(k_contrast, (), minval=lo,
                                                  maxval=hi))
  return img


def _geometry(x: jax.Array, spec: InputSpec) -> jax.Array:
  if spec.pad:
    p = spec.pad
    x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  if spec.resize:
    x = jax.image.resize(x, (x.shape[0], spec.resize, spec.resize, x.shape[3]),
                         'bilinear')
  return x


def _normalize(x: jax.Array, spec: InputSpec) -> jax.Array:
  if spec.normalize == 'unit':
    return x / 255.0
  if spec.normalize == 'per_image':
    return per_image_standardization(x)
  if spec.normalize == 'mean_std':
    return (x - jnp.asarray(spec.mean)) / jnp.asarray(spec.std)
  raise ValueError(f'unknown normalize {spec.normalize!r}; valid: unit, '
                   'per_image, mean_std')


def preprocess_train(images: jax.Array, key: jax.Array,
                     spec: InputSpec) -> jax.Array:
  """uint8 [B,H,W,C] -> float32 distorted, normalised batch."""
  x = _geometry(images.astype(jnp.float32), spec)
  keys = jax.random.split(key, x.shape[0])
  x = jax.vmap(lambda k, im: _distort_one(k, im, spec))(keys, x)
  return _normalize(x, spec)


def preprocess_eval(images: jax.Array, spec: InputSpec) -> jax.Array:
  x = _geometry(images.astype(jnp.float32), spec)
  if spec.crop:
    x = central_crop(x, spec.crop)
  return _normalize(x, spec)


def spec_from_config(input_cfg) -> InputSpec:
  return InputSpec(pad=input_cfg.pad, resize=input_cfg.resize,
                   crop=input_cfg.crop, random_crop=input_cfg.random_crop,
                   flip=input_cfg.flip, brightness=float(input_cfg.brightness),
                   contrast=tuple(float(c) for c in input_cfg.contrast),
                   normalize=input_cfg.normalize,
                   mean=tuple(input_cfg.mean), std=tuple(input_cfg.std))
