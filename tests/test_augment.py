"""On-device preprocessing against TensorFlow's tf.image reference ops."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.data import augment


@pytest.fixture(scope='module')
def tf():
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')
  return tf


def _images(shape=(3, 32, 32, 3), seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)


def test_per_image_standardization_matches_tf(tf):
  x = _images()
  x[1] = 7.0  # constant image: std 0, so the 1/sqrt(N) floor applies
  want = tf.image.per_image_standardization(x).numpy()
  got = augment.per_image_standardization(jnp.asarray(x))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_brightness_and_contrast_match_tf(tf):
  x = _images()
  np.testing.assert_allclose(augment.adjust_brightness(jnp.asarray(x), 37.5),
                             tf.image.adjust_brightness(x, 37.5).numpy(),
                             rtol=1e-6)
  np.testing.assert_allclose(augment.adjust_contrast(jnp.asarray(x), 1.7),
                             tf.image.adjust_contrast(x, 1.7).numpy(),
                             rtol=1e-5, atol=1e-3)


def test_central_crop_and_flip_match_tf(tf):
  x = _images((2, 32, 32, 3))
  np.testing.assert_array_equal(
      augment.central_crop(jnp.asarray(x), 24),
      tf.image.resize_with_crop_or_pad(x, 24, 24).numpy())
  x_odd = _images((2, 31, 29, 1))
  np.testing.assert_array_equal(
      augment.central_crop(jnp.asarray(x_odd), 24),
      tf.image.resize_with_crop_or_pad(x_odd, 24, 24).numpy())


def test_train_preprocessing_shapes_and_determinism():
  spec = augment.InputSpec(crop=24, random_crop=True, flip=True,
                           brightness=63.0, contrast=(0.2, 1.8),
                           normalize='per_image')
  x = jnp.asarray(_images((4, 32, 32, 3)), jnp.uint8)
  a = augment.preprocess_train(x, jax.random.key(1), spec)
  b = augment.preprocess_train(x, jax.random.key(1), spec)
  c = augment.preprocess_train(x, jax.random.key(2), spec)
  chex.assert_shape(a, (4, 24, 24, 3))
  chex.assert_trees_all_equal(a, b)
  assert not np.allclose(a, c)
  # Per-image standardisation: each distorted image has mean 0, std 1.
  np.testing.assert_allclose(jnp.mean(a, axis=(1, 2, 3)), 0.0, atol=1e-4)
  np.testing.assert_allclose(jnp.std(a, axis=(1, 2, 3)), 1.0, atol=1e-3)


def test_random_crop_is_a_window_of_the_image():
  x = jnp.arange(2 * 8 * 8, dtype=jnp.float32).reshape(2, 8, 8, 1)
  spec = augment.InputSpec(crop=5, random_crop=True, normalize='unit')
  out = augment.preprocess_train(x.astype(jnp.uint8), jax.random.key(0), spec)
  for i in range(2):
    found = any(np.allclose(np.asarray(out[i]) * 255.0,
                            np.asarray(x[i, t:t + 5, l:l + 5]), atol=1e-3)
                for t in range(4) for l in range(4))
    assert found


def test_eval_pad_resize_and_mean_std():
  x = jnp.full((1, 28, 28, 1), 51, jnp.uint8)
  spec = augment.InputSpec(pad=2, normalize='mean_std', mean=(51.0,),
                           std=(2.0,))
  out = augment.preprocess_eval(x, spec)
  chex.assert_shape(out, (1, 32, 32, 1))
  assert float(out[0, 5, 5, 0]) == 0.0           # inside: (51-51)/2
  assert float(out[0, 0, 0, 0]) == -25.5         # zero padding: (0-51)/2
  spec = augment.InputSpec(resize=32)
  chex.assert_shape(augment.preprocess_eval(jnp.zeros((2, 8, 8, 1), jnp.uint8),
                                            spec), (2, 32, 32, 1))


def test_crop_larger_than_image_is_rejected():
  with pytest.raises(ValueError, match='larger than'):
    augment.central_crop(jnp.zeros((1, 8, 8, 1)), 9)
