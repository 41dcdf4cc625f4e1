"""Binary CIFAR-10 net trained from scratch (jaxcnn/models/binary.py):
float conv1 and output layer, every other conv binary (weights and
activations); ':plain' without the binary residual units. Trained as a
'binary' compression run, which clips the latent weights to [-1, 1] and
writes the bit-packed artifact and report (docs/binary.md).

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/binary/bnn_cifar.py --workdir runs/binary_bnn_cifar
GPU-sized (30 epochs); ":smoke" a few steps of a tiny version. Kept out of
configs/*.py, which the test suite smoke-trains one by one: this net
compiles slowly on the 2-core CPU.
"""
from jaxcnn.config_base import (base_config, set_cifar_sgd_recipe,
                                set_cifar_standard_input, set_smoke)


def get_config(arg=None):
  c = base_config()
  c.model.name = 'bnn_resnet_cifar'
  set_cifar_standard_input(c)
  set_cifar_sgd_recipe(c, learning_rate=0.1, num_epochs=30.0,
                       weight_decay=5e-4)
  c.l2.include = '^(conv1|output)/kernel$'  # no decay on binary latents
  c.compress.method = 'binary'
  c.compress.binary.include = r'^(s\d+c\d+(/conv)?|fc)/kernel$'
  c.eval_every_steps = 390 * 10
  if arg == 'plain':
    c.model.name = 'bnn_cifar'
  elif arg == 'smoke':
    set_smoke(c)
    c.compress.method = ''         # plain training; artifact step tested elsewhere
    c.model.stages = (8, 16)
    c.model.hidden = 16
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: plain, smoke')
  return c
