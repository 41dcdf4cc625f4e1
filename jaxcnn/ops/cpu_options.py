"""XLA:CPU compile options for the train step, picked by backend.

jaxlib 0.10.2 hands CPU convolutions and dots to YNNPACK by default. Its
convolution is fine forwards but slow for the filter gradient, which XLA
lowers to a convolution with a large (image-sized) window: measured 2-3x
slower than XLA's own Eigen convolution on the CIFAR nets' conv2
(docs/performance.md). Restricting YNNPACK to dots sends convolutions back to
Eigen. The options are per executable (jit's `compiler_options`), so nothing
global changes and GPU/TPU compiles never see them. Same math, different
summation order: tests/test_perf_equivalence.py checks the results agree.
"""
from __future__ import annotations

CONV_LIBRARIES = ('eigen', 'ynnpack')

_EIGEN_CONV = {'xla_cpu_experimental_ynn_fusion_type':
               'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'}


def train_compiler_options(platform: str, conv: str) -> dict | None:
  """jit compiler_options for a train step on `platform` ('cpu', 'gpu'...).

  conv: config.xla_cpu_conv, 'eigen' or 'ynnpack' (XLA's default).
  """
  if conv not in CONV_LIBRARIES:
    raise ValueError(f'xla_cpu_conv must be one of {CONV_LIBRARIES}, '
                     f'got {conv!r}')
  if platform != 'cpu' or conv == 'ynnpack':
    return None
  return dict(_EIGEN_CONV)
