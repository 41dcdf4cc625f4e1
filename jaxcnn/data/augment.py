"""On-device preprocessing and the TF CIFAR-10 tutorial's distortions.

Runs inside the jitted step on uint8 batches: per-example keys, no host work.
Brightness and contrast act on float pixels in 0..255, as in the tutorial
(tf.cast to float32, then tf.image.random_*), without clipping.

normalize='cifar10_pixel_mean' is He et al. 2016's "per-pixel mean
subtracted": (x - M) / std, with M the 32x32x3 mean image of the CIFAR-10
training split (below) and `std` from input.std (1.0 for the paper: raw
0..255 units). Unlike the other modes it runs FIRST, before padding, so the
pad-4 border is the mean image's value (0 after subtraction) and each pixel
loses the mean of its own position, not of where a random crop moved it.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np


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
  normalize: str = 'unit'  # 'unit' (x/255), 'per_image', 'mean_std' or
  #                          'cifar10_pixel_mean' (before geometry; module doc)
  mean: tuple[float, ...] = ()  # per-channel, 0..255 units, for 'mean_std'
  std: tuple[float, ...] = ()

  def output_size(self, hw: int) -> int:
    hw = hw + 2 * self.pad
    hw = self.resize or hw
    return self.crop or hw


# Per-pixel mean of the 50,000 CIFAR-10 training images, 0..255, HWC: the
# shared JPEG-q75 copy (cifar10_jpeg_bytes.npz, decoded with Pillow), stored
# as round(16 * mean) uint16, zlib, base64. Its channel means are
# (125.27, 122.93, 113.86), the original's about (125.31, 122.95, 113.87)
# (shared/data/README.md). Rebuild: x_train.astype(float64).mean(0).
_CIFAR10_PIXEL_MEAN_B64 = (
    'eNotl3d8z1cXxxPknIOUoBFi12zV06oW1aHUHs2ShJAIMWtGESEhqEdrRcVWQW21Z43GDkUJScSO'
    'UFUj9qgEfd7fX58/cl4353fvOZ/zOePeb20bY1/YWxZr9a2ejbMW1tCmIFvYDxZoX1myBVuY/WSR'
    '1tXWWjfrb5v5G2S7kLG2x4ZZjB2wITba9tlIG2UH0Yyx/axHuvRjLMVGsHOfDbY4+5Vfh9tezsfY'
    'Tn4djJ1+Fm3b0PS1rdbLeto6643HNRaO50XWxZrZHGtvn9oka2fv2QRrYrWw9zmYY+xjZDS4va2P'
    'VWM9iB018fA+ujgi+dQm2mfWkoiaczqJVajNN3+sLia6HrbMOuFzNf764bErGNbyW380XUGxkl97'
    's6cje1Zysq+tYGcPZIhFwUkou5ZakEVgLZj/ks3PAmyWtcXPdGtqjfHe2D6Ag4/sbSL/wCoScW0r'
    'jb2aVhxZxSrgoZoVxa6X+WCvjJWHg7JWg4gq2X+IrgpxDCPmz4noHWx/izU/2KgPrkS0YTYTLxFE'
    '9yXYZ5HNCJuBd+fXT6yza08n8DRiPRU2QmwavAXb98gAm4wdf/sOH63gti7n4q0O/40EQV28V7Xq'
    'cFMe5D2snJWiDrxBG2olTbFaDKTh9qZ5UCmvtTj2CvF7KLICUslIFxPsRZonGenN/qYw4Et1Dcea'
    'H16q4j2efYGsq3HeWQdRR9WxOAKv/mS5MvmPAYMfPFSyNkhfGB6Eb8eaN3IgvDWyAaD6CFa97F3Q'
    'FsFGuBXGTxh4ShOxgDzQ3EDbxv7RAth+pd54K2gFqLK7WgR5X4vBRK6WcmnK4Oe2VmX/fX2b/Q+0'
    'Pvy9UIfLF9qMfBUglihzRzrr5tYd+61c66Z4f6VN8e7IcMvX5rDxjzoZcyx0sGdaD+8PkQH2WOuA'
    '7QFe/NC8RfS5Ws5aI0ti7zaomts9LQSq2+rYuK2vtYXd0RJge6QvtaGdV3eiP8ee+pahhcneGU59'
    'aKfUB+5PY60+6xrkNlPfpQ7OagMqJls/BvsV8DRl3RDNJdZNWH9EVZ0n3s/sAjubIP/Vf0iFnde6'
    '9NY5fYcKS9da2MwAcyO8VHKtfdFnwG1DvBS1BiARsJ0FcwO85xFxFvJTbHriJVufam07pM+1mu3T'
    'F/C9i50VbAc5qmCbsVDOtugbZH29lkWzFS9VkG9TMbvBUMN2cr4K8m2qZzvRVcFCLepmG7Iimlpo'
    'tsHwW+hruvbU4Ncd2KmMfae6t2pp1/pNKmwblVyNPZ4u+wWoo536Cmwp4Kxpv+ojrW779Ym+b4e1'
    'IF19XO9gY73mcno10ssW62MysJCIzGaTr0JId2piOrG4WxJZ87AZxOLofVknkR03m4nGjT0VqJJZ'
    'Ls0Mrcj+2Wg8bJZWQc5H76zLYm02VVqIPSVddjzNsFAEOQ9UbyAL0AlL4LMU8glyJThL2wq9RUWs'
    'BWdV4s1TJ9JscM3Wa5z7QXPgfqLe1Gc6jj1PNZ5YcnUk8pYOhocbOgTLN1kXtRv6DX7/ZO1l11mX'
    'QBNN3q/rMLj4E1nWbuko+uguFsohR4PgHusS6Edg4Y4OB3Mue4QeiAPBEx2Llzy8v6Cuv9OHMDdJ'
    '7/LLdLB52DS9qgoDf2IpGZTlbLleUDf7Vi/y32jW90GYQwQD2HNDe4P+skYhz2pHojipIVhP0w7Y'
    'OqWdyFCahtIpJzXMJTuC7YR2Rp5C403tRhJLpnYllnPaC81FrHlRwd3BkaXhZDeLPa/x0g15Tfti'
    '/44OBM09GMiF++HgeEzUF6mIkSDMJ7qrRD8ZbQmydhaehyBv69fI6/i6zK4wVlkahK1T6oc8os2o'
    'vRRtwu7d+gl1tVM/x/tO/RRbv+gX5MLRlGTdFLlbvwT5Hm3Jeq+2IAsHtD2aVG1LhR9ECl3XAn4P'
    'aWswHdM2cH5KA7B/Hpbu6yWi+5OIHDzXtYdm6F/IdGIawG9uFkuEYuNh85ZGIC9pMDITa1l6HLQ5'
    'yC+I6qB+Bv5d+gE212ttcrpKq5LlFVoD/KuQntTlO/C/UmvB8AqtQ3bXIMsg67Jep+/D/0atTx1v'
    'xk4x26D1yOAmfQ/8W1jnwcaHcJ4CM/c1VRvj9zjRZetpbQWedP1KfycuP2Q2ec8iL73Zk0/1HgN5'
    'G/1NT3DqqB7Cfhpo6xD1Hn2XmJk1RPizViTeZC1N1uarF37nqTfV+yOakjZXy8DtfNa+rMtSlwuQ'
    'Ffm1AtMhWcuxXqSViWUxay+mQ3m4W8ypgrYUy/m6Rivp37oRBnJ1Ox5vkuW61MF+8JyGw4ZUwDFt'
    'BM4zxJUJ9hCyco8cHSCmj5ApcHuQs5Wo8vXYv4A1X2pvhfoQRbJ6wvxMLYyXH7Qg1TudtRfTpzA8'
    'J2pRGE5UZSpO1SIuqUz1f9eOvjL7Pdkzg/3eSE9in6VGFuboG+BfiHymS+DkLzy+SfZ/JvYzYCgP'
    'q5v1Ld1HRNXh9zCZOq1XtDmZ+IOM7Na9Wg3poE3hVHEyt1SLEeMS7F/VueoBG0n6Sp7oFGQec+GZ'
    'eNg4fS5vUH/PpIyN1Txkgj6VChaH3tdG6UPWsfpIyqF5IBVtDPqyTIrn4m0T2G/Ip+KG/BvLk9Df'
    '1an6Uq7g66Wc1TlaiEpaAFe/6iL42QG2Eqx3aBUYT6cac0DXksrbQR63E3UR1gv1HznIBM+XE5qo'
    'j+Wcfg+SP/S/ek9ymae35JHG6DWiGKRXxN0G6iWiGKg5Utz662UpaX2Qxa2nZkkJi9Kz4mW9kCWt'
    'Lzu9LFqzpQgyR/KxcBHk0dj5i1lzBeQxel3OMAdvyG86Xu/Kbri6J1tB8kw2EMtr2aKrydQR6qgG'
    'OThPRW2jWorA/nw42QDDd2S7JmBnL3P5ElEM1fNE8Y1mymXtqSeIpZumEktnPUwsnXS/vEYehslQ'
    'PYD00xSwtdHt8ore206kbXWrvGT67JRnGqi75DHzN0VuMi/2yFXm7z7J1C7IE8yaVNmPl9/kF+2n'
    'p+VnJmOGrORuuCrLXdjWUsmv5BCV7stETWcCrNNlIF8GzzdlERM2XVZw9risw84BGIgA4SH6ZDf2'
    'A3SbpGk7XSvnqb81colZuQwkjXWV3Ga2Lkc20J/kOr03V3Lo/1lyEZnIznd1Jqc+1Dmw0VAXYecz'
    'TZZjnF0O5ha6AswtsbyWWbMePEHEPo+4dslcboVjyDjyuJTuuycpVEoxPUcd1aBuFqCZC9uZkqh9'
    'dK8k0dtb0fjpamJpjdyA5aWyE1+LiaghqA4wE5PkCPEnyu9Mz0Q5ydSYjKysE+UoU2aMpDKP4mQf'
    'PTnMJUfJr3RjnOxhRownyzV1gmzm7BRZjbVpsoRZkySzXPancq8slAlkcKl8x724XaYwK4/IQjrl'
    'DyxsYyZk0tmVdLHOoFqmcOelSgI718kYpn+yjKO2fpBpMDZdZsPnJOzX1u9hoLomyBqmXjxxVdCR'
    '1KSPxsomLaXRyKI6UNYzZfrCZCHtLatUNIr9qn1gtahLFtdB5Lq0DpEfmbMxwltJR8hkYh8tY4kr'
    'QUaSr+9lmH4MhlFkfIWM5/52csFbASY3qxu3wBF4WkBdnSdS59cYcrdIoqmBqTIIZuIllrtqJDar'
    '6HBirICvqfgdgMdi+jWZ8tQeZFm1pzhzKhL5Srqgz5MQmclkCWFnvnRAky8dya+bdpTp7Owmk4il'
    'm/wXC71kNJOlN5i9iX0IXobIACbmKOlDXsbJYKp0LlF01Q1kZywVvlM3YS+L+eTDfPxOz8B5pG4C'
    'cyudLX05NV6iwBzNuoz2x4IPvMW6vMTiMYL9Hsh4ddcQosuXYHFmaCDysfhLnN6XVmTzobQF2xNp'
    'zc5H0g6ZJ36cdaIYwWQMhmEP7SwDyVdn6Q8nUdILX72lO1FESxdyEYPmE6prBD24WuYwl85Qh1td'
    '+A+T8znMxpNYjqB3vqYrEzlbB+bDsNBXOnPXRkoEMytMelAJHbFWSAPx6I73flhpj98n4OwH8has'
    'c5F9mBRfsL4jX2LznjTh11xphuY5cQ1ivvvDjJv6sdNdO0gkUQThxfDSCZbCpaOLsSCyMFC60RET'
    'qY0uVNFc8KfRv1v1BXMgVUtSP5PQjOVduAEvraj2SPiPkxB6o48EYy0CO0XxEoYXRxbEbzfuiQAJ'
    'h8/W7HcYjkA2Q+aCuQuyMeu7II8gC03Y/5C4IqmolqzzyEU4+B3prgH48lB/ZGENFX+6o5MEUKU9'
    'WFcl+5F0ooM/AvzzqP9TTINt4L/Ei8Jbf2IinZVvmTybYcaP3o+kZ0djrZr2k0B2RGLNC8sdsB8s'
    'ochA8uIwFurCEIqtNkT6tzRnzwOiCKJamqJ5yDqQdWOsPeHXYJC3QOazPwjkbVzIAznlCTMheOkC'
    '5tLwH0Bn9mJnbXqhN2/ZqVRITyb2IthO54bdgc9s5qcP99k87qkp3IO75Bsm53wqvxFdE8rZQXgp'
    'T28G0AWdsVYSGUJGQsiyJxEFE0uAC8lX8hWd21La8SZoLm25L79E8xy0bZBNxA9/LbHjYA6iAv2I'
    'qwic88VAzYQyhZyaKQfnIdRML+zX0sHSlfkTzzzxp38ngnArd1mSXmAy74aDHF5qZbh5F/MemM3b'
    '4BCd1VNXkoU2VFF3uiaO7NeBgc7M9r5Yq4YMp6+j0JfX7ngsjfdguiMEtOaKooBLFtL2IBSi82M6'
    'tQdzYfL1b+x82cBzGBYi8FIVm93hqj/95fiK4jU5zNWzCXRZO5gfR22vZvIkcJ9u5IVznVtvH/V7'
    'jXdcWSpppf4li7l/T5GFodywY+j0JeTCn14eTEdPZJo1oaIGYTOeHmnILO3PjTCUSq5Fj3Sh06PA'
    'VpbsdARbOHz6sA6Dna6uORBBvBXh1mGgh/SEjQH0bz3QRrtsDqFCEmSoy9dQME9ilnZgEibwnbaE'
    'CTyc2lii05gzO7lv78opJk9BXpVZWE3hLnjIa2Eu766FzNIjRDpcfyGWAdTbJGJfypSOpK4m8s6Z'
    'wz0SQnbGcVNMo6ea61gidTAM4NYYBmP1mHj96aChxN6Ae81BGCvDeS0k/H9/AginYCeYu2kSX3rz'
    '8BXFbZvIHbQM2Z8amMWLawvdOpp3y3KdDPKNvHwuc+9vpEIz6Fzju/gytfYbb9KX4rycnZfeYt6B'
    'G3jnZ3CnT9Wj3J4T9CCviG95a63SMS5r8dThUjK1SeYT43Jmck9iTOLrLhm/kbwxknjjLWTdjfVM'
    '9IuYe73Y6exf6Tq7GTtx5Ho1NvfwTpvIu2UjN+lR7u5E5CZeBae52Rfwjt3NC+0Gb6RN3ConqPx/'
    'mJwn6b8HfF3W5Jv3OLWZzpdOQfp5D1Pkd93CLD/G/tvs/5l33XFdS4+k0et/8OsqePiduXWJ908y'
    'kR4hd+lymDlwmpfPHDSpaM6gmYXmEPo09szjfXUUfrLI/jLek2lYvgaT63mTZzDPb3MfbacS0vUX'
    'cGYgn/KW3kP3Z/KF4sb3byoIz8G3J7xnMEvyiKAuVXSFvs/le6si37mXqdzHvKt9kZf5Dspj7cOX'
    '/0Vm22vWpfhWOo8FN8tE85LoC/Mtn0YHv8JmYb4H0107zzJd3C2NG/WlS+/2f/0FNB52kc4oYDnY'
    '97BsvLvZNSaBm12lp/P4LvTBSzZ4HvOFUkYf4b0iX4yX6bBbeHfWV3gr/Q+WyxNQ')


@functools.lru_cache(maxsize=1)
def cifar10_pixel_mean() -> np.ndarray:
  """The [32, 32, 3] float32 CIFAR-10 training mean image (0..255)."""
  raw = zlib.decompress(base64.b64decode(''.join(_CIFAR10_PIXEL_MEAN_B64)))
  return (np.frombuffer(raw, '<u2').reshape(32, 32, 3) / 16.0
          ).astype(np.float32)


def subtract_pixel_mean(x: jax.Array, spec: 'InputSpec') -> jax.Array:
  """(x - M) / std on raw [.., 32, 32, 3] images (cifar10_pixel_mean)."""
  if tuple(x.shape[-3:]) != (32, 32, 3):
    raise ValueError("normalize='cifar10_pixel_mean' needs 32x32x3 images "
                     f'before padding, got {tuple(x.shape[-3:])}')
  return (x - jnp.asarray(cifar10_pixel_mean())) / jnp.asarray(spec.std)


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
  if spec.normalize == 'cifar10_pixel_mean':  # already done, before geometry
    return x
  if spec.normalize == 'unit':
    return x / 255.0
  if spec.normalize == 'per_image':
    return per_image_standardization(x)
  if spec.normalize == 'mean_std':
    return (x - jnp.asarray(spec.mean)) / jnp.asarray(spec.std)
  raise ValueError(f'unknown normalize {spec.normalize!r}; valid: unit, '
                   'per_image, mean_std, cifar10_pixel_mean')


def _to_float(images: jax.Array, spec: InputSpec) -> jax.Array:
  x = images.astype(jnp.float32)
  if spec.normalize == 'cifar10_pixel_mean':
    x = subtract_pixel_mean(x, spec)
  return x


def preprocess_train(images: jax.Array, key: jax.Array,
                     spec: InputSpec) -> jax.Array:
  """uint8 [B,H,W,C] -> float32 distorted, normalised batch."""
  x = _geometry(_to_float(images, spec), spec)
  keys = jax.random.split(key, x.shape[0])
  x = jax.vmap(lambda k, im: _distort_one(k, im, spec))(keys, x)
  return _normalize(x, spec)


def preprocess_eval(images: jax.Array, spec: InputSpec) -> jax.Array:
  x = _geometry(_to_float(images, spec), spec)
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
