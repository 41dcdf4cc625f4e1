"""Train/eval step runners for the PyTorch and TensorFlow references.

Each runner does what jaxcnn's step does minus the on-device augmentation
(its inputs are already float, model-sized images): forward, softmax
cross-entropy, backward, momentum SGD (lr 0.01, momentum 0.9). `train(n)` and
`eval(n)` run n steps and wait for the device, so the harness can interleave
them with jaxcnn's. Imports are local: a missing framework only skips its
runners (`available()` says why).
"""
from __future__ import annotations

import importlib.util
import time

import numpy as np


def available(framework: str) -> str:
  """'' if usable, else the reason it is skipped."""
  module = {'torch': 'torch', 'tf': 'tensorflow'}[framework]
  if importlib.util.find_spec(module) is None:
    return (f'{module} is not installed (pip install -r '
            'benchmarks/requirements.txt)')
  return ''


def set_threads(n: int) -> None:
  """Caps torch's and TF's CPU thread pools (call before building runners)."""
  if not available('torch'):
    import torch
    torch.set_num_threads(n)
  if not available('tf'):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)


def _synthetic(batch, shape, classes, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, *shape), dtype=np.float32)
  y = rng.integers(0, classes, (batch,)).astype(np.int64)
  return x, y


def _time_first_steps(runner) -> None:
  """The first train/eval step of a runner includes its tracing and codegen
  (torch.compile, tf.function, XLA): record them as compile times."""
  t = time.perf_counter()
  runner.train(1)
  runner.compile_s = time.perf_counter() - t
  t = time.perf_counter()
  runner.eval(1)
  runner.eval_compile_s = time.perf_counter() - t
  runner.memory_bytes = None


class TorchRunner:
  """PyTorch eager, or torch.compile of the model ('torch.compile')."""
  framework = 'torch'

  def __init__(self, model_name, image_shape, classes, batch, compiled=False,
               precision='float32', device=''):
    import torch
    from benchmarks.reference import torch_models
    self.torch = torch
    self.name = 'torch.compile' if compiled else 'torch eager'
    self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model = torch_models.build(model_name, image_shape, classes)
    self.params = torch_models.param_count(model)
    self.model = model.to(self.device)
    self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = _synthetic(batch, image_shape, classes)
    self.x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(
        self.device)
    self.y = torch.from_numpy(y).to(self.device)
    self.bf16 = precision == 'bfloat16'
    self.fwd = torch.compile(self.model) if compiled else self.model
    if self.device == 'cuda':
      torch.cuda.reset_peak_memory_stats()
    _time_first_steps(self)

  def _autocast(self):
    return self.torch.autocast(self.device, self.torch.bfloat16,
                               enabled=self.bf16)

  def _sync(self):
    if self.device == 'cuda':
      self.torch.cuda.synchronize()

  def train(self, n):
    F = self.torch.nn.functional
    self.model.train()
    for _ in range(n):
      self.opt.zero_grad(set_to_none=True)
      with self._autocast():
        loss = F.cross_entropy(self.fwd(self.x).float(), self.y)
      loss.backward()
      self.opt.step()
    self._sync()
    return loss.item()

  def eval(self, n):
    self.model.eval()
    with self.torch.no_grad(), self._autocast():
      for _ in range(n):
        out = self.fwd(self.x)
    self._sync()
    del out

  def peak_device_bytes(self):
    if self.device == 'cuda':
      return int(self.torch.cuda.max_memory_allocated())
    return None

  def close(self):
    pass


class TFRunner:
  """Keras model, tf.function step; jit_compile=True is the XLA variant."""
  framework = 'tf'

  def __init__(self, model_name, image_shape, classes, batch, xla=False,
               precision='float32', device=''):
    del device  # TF places ops on the GPU by itself when it has one
    import keras
    import tensorflow as tf
    from benchmarks.reference import keras_models
    self.tf = tf
    for gpu in tf.config.list_physical_devices('GPU'):
      try:  # share the GPU with JAX and torch instead of taking all of it
        tf.config.experimental.set_memory_growth(gpu, True)
      except RuntimeError:  # already initialised by an earlier runner
        pass
    self.name = 'tf+xla' if xla else 'tf'
    keras.mixed_precision.set_global_policy(
        'mixed_bfloat16' if precision == 'bfloat16' else 'float32')
    model = keras_models.build(model_name, image_shape, classes)
    self.params = keras_models.param_count(model)
    opt = keras.optimizers.SGD(0.01, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = _synthetic(batch, image_shape, classes)
    self.x, self.y = tf.constant(x), tf.constant(y.astype(np.int32))

    @tf.function(jit_compile=xla)
    def train_step(x, y):
      with tf.GradientTape() as tape:
        logits = tf.cast(model(x, training=True), tf.float32)
        loss = loss_fn(y, logits)
      grads = tape.gradient(loss, model.trainable_variables)
      opt.apply_gradients(zip(grads, model.trainable_variables))
      return loss

    @tf.function(jit_compile=xla)
    def eval_step(x):
      return model(x, training=False)

    self._train, self._eval = train_step, eval_step
    self.gpu = bool(tf.config.list_physical_devices('GPU'))
    if self.gpu:
      tf.config.experimental.reset_memory_stats('GPU:0')
    _time_first_steps(self)

  def train(self, n):
    for _ in range(n):
      loss = self._train(self.x, self.y)
    return float(loss.numpy())  # .numpy() waits for the device

  def eval(self, n):
    for _ in range(n):
      out = self._eval(self.x)
    out.numpy()

  def peak_device_bytes(self):
    if self.gpu:
      return int(self.tf.config.experimental.get_memory_info('GPU:0')['peak'])
    return None

  def close(self):
    pass
