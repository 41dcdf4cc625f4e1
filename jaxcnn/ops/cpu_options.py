"""The CPU convolution library of a train step, picked by backend and mesh.

config.xla_cpu_conv:
  'auto'    oneDNN (jaxcnn/ops/conv.py) when its extension loads and the
            mesh is one CPU device, else 'eigen'. The default.
  'onednn'  oneDNN, and an error when it cannot be used.
  'onednn_bf16'  oneDNN with bf16-rounded inputs and float32 accumulation,
            where the CPU multiplies bf16 natively (AVX512_BF16, AMX); an
            error elsewhere. Forward and input-gradient convolutions ~1.8x,
            filter gradients ~1.3x faster than float32 oneDNN with
            AVX512_BF16; with AMX 3.4-5.2x and 1.3-3.6x.
  'eigen'   XLA's Eigen convolutions.
  'ynnpack' XLA's YNNPACK convolutions (jaxlib 0.10.2's own default).

Measured on the 2-core dev CPU (docs/performance.md): oneDNN's forward and
backward convolutions are ~2x faster than Eigen's on the CIFAR nets, and
Eigen's backward convolutions 2-3x faster than YNNPACK's, whose filter
gradient is a convolution with an image-sized window. Restricting YNNPACK
to dots sends XLA's convolutions (those oneDNN does not take: grouped,
dilated, bf16) back to Eigen. The options are per executable (jit's
`compiler_options`), so nothing global changes and GPU/TPU compiles never
see them. Same math, different summation order:
tests/test_perf_equivalence.py and tests/test_conv_onednn.py check that the
results agree.

With the batch split over several devices, XLA's partitioner would replicate
oneDNN's custom calls, so 'auto' keeps multi-device meshes on Eigen.
"""
from __future__ import annotations

from jaxcnn.ops import conv as conv_ops

CONV_LIBRARIES = ('auto', 'onednn', 'onednn_bf16', 'eigen', 'ynnpack')

# YNNPACK takes dots and reductions; convolutions stay on Eigen (or are
# oneDNN custom calls) and elementwise loops stay XLA's. Without REDUCE, XLA
# rewrites a large reduction (a conv bias's gradient, a sum over N, H, W)
# into a reduce-window over strided windows: conv1's bias gradient in the
# tutorial net took 22.5 ms of a 73 ms step, 1.6-2.2 ms as YNNPACK's reduce.
# Measured train steps (docs/performance.md, 2026-12-03 AMX VM): tutorial
# 113 -> 86 ms (onednn), 90 -> 64 ms (onednn_bf16); alexnet_cifar 843 ->
# 777 ms, 508 -> 426 ms. Adding ELTWISE (jaxlib's default also has it)
# undid the gain (111 / 89 ms): its loops are slower than XLA's fusions.
_YNN_FUSIONS = ('LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT',
                'LIBRARY_FUSION_TYPE_REDUCE')
_TRAIN_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type':
                  ','.join(_YNN_FUSIONS)}


def _check(conv: str) -> None:
  if conv not in CONV_LIBRARIES:
    raise ValueError(f'xla_cpu_conv must be one of {CONV_LIBRARIES}, '
                     f'got {conv!r}')


def train_compiler_options(platform: str, conv: str) -> dict | None:
  """jit compiler_options for a train step on `platform` ('cpu', 'gpu'...).

  conv: config.xla_cpu_conv.
  """
  _check(conv)
  if platform != 'cpu' or conv == 'ynnpack':
    return None
  return dict(_TRAIN_OPTIONS)


def onednn_unavailable(conv: str, platform: str, n_devices: int) -> str:
  """Why conv='onednn' cannot be used here ('' when it can)."""
  _check(conv)
  if platform != 'cpu':
    return f'oneDNN convolutions are for CPU meshes, this one is {platform}'
  if n_devices != 1:
    return (f'oneDNN convolutions need a one-device mesh, this one has '
            f'{n_devices} (XLA would replicate them)')
  if conv == 'onednn_bf16':
    status = conv_ops.onednn_bf16_status()
    return '' if status.ok else f'oneDNN bf16 is unavailable: {status.reason}'
  status = conv_ops.onednn_status()
  return '' if status.ok else f'oneDNN is unavailable: {status.reason}'


def model_conv(conv: str, mesh, strict: bool = True) -> str:
  """'onednn', 'onednn_bf16' or 'xla': the `conv` field models get.

  strict False (readers of a finished run: eval, predict, export): a
  library this machine cannot run gives 'auto''s choice instead of an
  error, since the conv library only decides how the same function is
  computed, and a workdir must open wherever it is copied.
  """
  _check(conv)
  if conv in ('eigen', 'ynnpack'):
    return 'xla'
  why = onednn_unavailable(conv, mesh.devices.flat[0].platform,
                           mesh.devices.size)
  if not why:
    return 'onednn_bf16' if conv == 'onednn_bf16' else 'onednn'
  if conv == 'auto':
    return 'xla'
  if not strict:
    return model_conv('auto', mesh)
  raise ValueError(f'xla_cpu_conv={conv}: {why}')


def describe(conv: str, mesh) -> str:
  """One log line: which convolutions a run on `mesh` gets, and why."""
  platform = mesh.devices.flat[0].platform
  if platform != 'cpu':
    return f'convolutions: XLA ({platform})'
  if conv in ('eigen', 'ynnpack'):
    return f'convolutions: XLA {conv} (xla_cpu_conv={conv})'
  why = onednn_unavailable(conv, platform, mesh.devices.size)
  if why:
    return f'convolutions: XLA eigen (xla_cpu_conv={conv}; {why})'
  kind = ' bf16 inputs, float32 sums' if conv == 'onednn_bf16' else ''
  return (f'convolutions: oneDNN {conv_ops.onednn_status().version}{kind} '
          f'(xla_cpu_conv={conv})')
