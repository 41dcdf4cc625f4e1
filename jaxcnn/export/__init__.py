"""Deployment export: a training or compression workdir as one file.

  python -m jaxcnn.export --workdir W --format {stablehlo,tflite} \
      [--quantize {none,fp16,int8}] [--weights auto|params|ema] --output FILE

The exported function is the whole deployable model: uint8 images
[N, H, W, C] as the dataset stores them in, the run's eval preprocessing
inside, float32 class probabilities out. Beside FILE, export writes
FILE.json (class names, input shape, batch, provenance) for
`python -m jaxcnn.predict --model FILE`. docs/export.md has the details.

This module stays light (predict imports the runtime through it): the
converters live in convert.py, the runtimes in runtime.py.
"""
from __future__ import annotations

from jaxcnn.errors import JaxcnnError

FORMATS = ('stablehlo', 'tflite')
QUANTIZE = ('none', 'fp16', 'int8')
# What each format can hold. StableHLO stays float32: XLA has no int8
# convolution kernels on CPU to make a quantized export worth shipping.
SUPPORTED = {'stablehlo': ('none',), 'tflite': ('none', 'fp16', 'int8')}
SIDECAR_SUFFIX = '.json'
SIDECAR_VERSION = 1


class ExportError(JaxcnnError):
  """The workdir, the requested export or an exported file is unusable."""


def sidecar_path(model_path: str) -> str:
  """FILE.tflite -> FILE.tflite.json (appended, so FILE.tflite and
  FILE.stablehlo exported side by side never share one sidecar)."""
  return model_path + SIDECAR_SUFFIX
