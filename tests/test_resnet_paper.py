"""ResNet-20 as published (configs/resnet20_cifar.py:paper): option-A
shortcuts, parameter count, He init modes, the step_50_75 schedule, the
cifar10_pixel_mean input mode, and the tutorial's :published schedule."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import experiment, optim
from jaxcnn.config_base import load_sibling
from jaxcnn.data import augment
from jaxcnn.models import get_model, layers, resnet
from jaxcnn.models.flops import param_count

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name, arg=None):
  return load_sibling(os.path.join(ROOT, 'configs', 'x.py'), name, arg)


def test_shortcut_a_subsamples_and_zero_pads_exactly():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
  y = resnet.shortcut_a(x, 8, 2)
  assert y.shape == (2, 4, 4, 8)
  np.testing.assert_array_equal(y[..., :4], x[:, ::2, ::2, :])
  assert not np.any(np.asarray(y[..., 4:]))  # exact zeros, not small values
  np.testing.assert_array_equal(resnet.shortcut_a(x, 4, 1), x)


def test_block_with_a_silent_branch_is_the_shortcut():
  """BN of conv2 scaled to 0: the block's output is relu(shortcut(x))."""
  block = resnet.BasicBlock(8, strides=2, shortcut='A', cpu_materialize=False)
  x = jax.nn.relu(jax.random.normal(jax.random.key(1), (2, 8, 8, 4)))
  v = block.init(jax.random.key(2), x)
  params = jax.tree_util.tree_map_with_path(
      lambda p, w: jnp.zeros_like(w) if 'conv2' in str(p) and 'bn' in str(p)
      else w, v['params'])
  out = block.apply({'params': params, 'batch_stats': v['batch_stats']}, x)
  np.testing.assert_array_equal(out, resnet.shortcut_a(x, 8, 2))
  assert not any('projection' in str(k) for k in v['params'])


@pytest.mark.parametrize('init', ['fan_out', 'fan_in'])
def test_resnet20_has_the_papers_0_27m_parameters(init):
  model = get_model('resnet20_cifar', kernel_init=init)
  v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  n = param_count(v['params'])
  assert n == 269_722 and round(n / 1e6, 2) == 0.27


def test_default_conv_bn_is_layers_conv_bn():
  """kernel_init='fan_out' (the default) is the old layers.ConvBN exactly:
  the default model's init and outputs are unchanged."""
  x = jax.random.normal(jax.random.key(3), (2, 8, 8, 5))
  new, old = resnet.ConvBN(16, 3, 2), layers.ConvBN(16, 3, 2)
  vn, vo = new.init(jax.random.key(4), x), old.init(jax.random.key(4), x)
  jax.tree.map(np.testing.assert_array_equal, vn, vo)
  np.testing.assert_array_equal(new.apply(vn, x), old.apply(vo, x))


def test_kernel_init_fan_in_vs_fan_out():
  x = jnp.zeros((1, 8, 8, 3))  # the stem kernel does not depend on H, W
  std = {}
  for init in ('fan_in', 'fan_out'):
    model = resnet.CifarResNet(depth=8, kernel_init=init,
                               cpu_materialize=False)
    v = model.init(jax.random.key(0), x)
    std[init] = float(jnp.std(v['params']['stem']['conv']['kernel']))
  np.testing.assert_allclose(std['fan_in'], (2 / 27) ** 0.5, rtol=0.15)
  np.testing.assert_allclose(std['fan_out'], (2 / 144) ** 0.5, rtol=0.15)
  with pytest.raises(ValueError, match='kernel_init'):
    resnet.CifarResNet(depth=8, kernel_init='xavier').init(
        jax.random.key(0), x)


def test_paper_config_is_the_papers_recipe():
  c = _config('resnet20_cifar', 'paper')
  experiment.validate(c)
  assert (c.batch_size, c.num_train_steps) == (128, 64_000)
  assert (c.optim.optimizer, c.optim.momentum, c.optim.nesterov) == (
      'sgd', 0.9, False)
  assert (c.l2.mode, c.l2.rate, c.l2.include) == ('coupled', 1e-4, '.*')
  assert (c.input.pad, c.input.crop, c.input.random_crop, c.input.flip) == (
      4, 32, True, True)
  assert c.input.normalize == 'cifar10_pixel_mean' and c.input.std == (1.0,)
  assert (c.model.shortcut, c.model.kernel_init) == ('A', 'fan_in')
  assert c.ema_decay == 0.0
  # The default config is untouched by the variant.
  d = _config('resnet20_cifar')
  assert (d.optim.schedule, d.input.normalize, d.l2.rate) == (
      'cosine', 'mean_std', 5e-4)
  assert 'kernel_init' not in d.model


def test_paper_schedule_divides_by_10_at_32k_and_48k():
  c = _config('resnet20_cifar', 'paper')
  sched = optim.make_schedule(c, 390, 64_000, 128)
  for step, lr in ((0, 0.1), (31_999, 0.1), (32_000, 0.01), (47_999, 0.01),
                   (48_000, 0.001), (63_999, 0.001)):
    np.testing.assert_allclose(float(sched(step)), lr, rtol=1e-6)
  short = optim.make_schedule(c, 78, 390, 128)  # compressed: same shape
  assert [round(float(short(s)), 6) for s in (194, 195, 291, 292)] == [
      0.1, 0.01, 0.01, 0.001]
  with pytest.raises(ValueError, match='decay_rate'):
    optim.step_50_75(0.1, 1.5, 100)


def test_tutorial_published_schedule():
  c = _config('cifar10_tutorial', 'published')
  experiment.validate(c)
  assert c.num_train_steps == 1_000_000 and c.ema_decay == 0.9999
  assert c.optim.momentum == 0.0 and c.batch_size == 128
  sched = optim.make_schedule(c, 390, 1_000_000, 128)
  for step, lr in ((0, 0.1), (99_840, 0.1), (136_717, 0.1), (136_718, 0.01),
                   (273_435, 0.01), (273_436, 0.001), (999_999, 1e-8)):
    np.testing.assert_allclose(float(sched(step)), lr, rtol=1e-5)
  d = _config('cifar10_tutorial')  # default: 256 epochs, never decays
  assert (d.num_epochs, d.optim.decay_epochs, d.num_train_steps) == (
      256.0, 350.0, -1)


def test_cifar10_pixel_mean_constant():
  m = augment.cifar10_pixel_mean()
  assert m.shape == (32, 32, 3) and m.dtype == np.float32
  np.testing.assert_allclose(m.mean((0, 1)), (125.27, 122.93, 113.86),
                             atol=0.01)
  assert m.min() > 60 and m.max() < 170 and m[..., 0].std() > 3  # not flat


def test_pixel_mean_mode_subtracts_before_padding():
  spec = augment.InputSpec(pad=4, crop=32, random_crop=True, flip=False,
                           normalize='cifar10_pixel_mean', std=(2.0,))
  x = jax.random.randint(jax.random.key(5), (3, 32, 32, 3), 0, 256
                         ).astype(jnp.uint8)
  want = (np.asarray(x, np.float32) - augment.cifar10_pixel_mean()) / 2.0
  np.testing.assert_array_equal(augment.preprocess_eval(x, spec), want)
  out = np.asarray(augment.preprocess_train(x, jax.random.key(6), spec))
  padded = np.pad(want, ((0, 0), (4, 4), (4, 4), (0, 0)))  # pad value = mean
  for i in range(3):
    assert any(np.array_equal(out[i], padded[i, t:t + 32, l:l + 32])
               for t in range(9) for l in range(9))
  with pytest.raises(ValueError, match='32x32x3'):
    augment.preprocess_eval(jnp.zeros((1, 24, 24, 3), jnp.uint8), spec)


def test_existing_modes_unchanged():
  x = jax.random.randint(jax.random.key(7), (2, 32, 32, 3), 0, 256
                         ).astype(jnp.uint8)
  spec = augment.InputSpec(pad=4, crop=32, normalize='mean_std',
                           mean=(125.0, 120.0, 110.0), std=(60.0, 61.0, 62.0))
  want = (np.asarray(x, np.float32) - np.float32([125.0, 120.0, 110.0])
          ) / np.float32([60.0, 61.0, 62.0])
  np.testing.assert_allclose(augment.preprocess_eval(x, spec), want,
                             rtol=1e-6)
  unit = augment.InputSpec()
  np.testing.assert_allclose(augment.preprocess_eval(x, unit),
                             np.asarray(x, np.float32) / 255.0, rtol=1e-6)


def test_torch_reference_matches_the_architecture():
  torch = pytest.importorskip('torch')
  import sys
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks', 'reference'))
  import resnet20_torch
  model = resnet20_torch.ResNet20()
  assert sum(p.numel() for p in model.parameters()) == 269_722
  block = resnet20_torch.Block(4, 8, 2).eval()
  torch.nn.init.zeros_(block.bn2.weight)
  x = torch.relu(torch.randn(2, 4, 8, 8))
  y = block(x)
  assert torch.equal(y[:, :4], x[:, :, ::2, ::2])
  assert not torch.any(y[:, 4:])
  assert [resnet20_torch.lr_at(s, 64_000) for s in (31_999, 32_000, 48_000)
          ] == pytest.approx([0.1, 0.01, 0.001])
