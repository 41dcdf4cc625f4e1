"""AlexNet sized for CIFAR-10 (the main job): 5 conv + 3 fc, LRN after conv1
and conv2, overlapping 3/2 max-pooling, dropout 0.5 in the fc layers.

LRN order here: conv -> ReLU -> LRN -> pool (the 2012 paper's order).
Command:
  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/alexnet_cifar.py --workdir runs/alexnet
Variants: ':nolrn' (same net without LRN), ':smoke' (3 steps).
Expected (measured): 87.36% test precision@1 (87.39% for ':nolrn') after 100
epochs; 450 s on an H100 shared with 8 other runs. On the 2-core CPU a step
takes about a second, so use an accelerator (docs/results.md); on a CPU with
AVX512_BF16, --config.xla_cpu_conv=onednn_bf16 (bf16 conv inputs, float32
sums) measured 1.31x TF's step and 1.41x its time to 2 epochs; on a CPU with
AMX 1.87x TF's step, and 2 epochs in 353.6 s vs TF's 620.4 s
(docs/performance.md).
"""
from jaxcnn.config_base import base_config, set_cifar_standard_input, set_smoke


def get_config(arg=None):
  c = base_config()
  c.model.name = 'alexnet_cifar'
  c.model.use_lrn = True           # LRN after conv1 and conv2
  set_cifar_standard_input(c)
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = 100.0
  c.optim.learning_rate = 0.02
  c.optim.momentum = 0.9
  c.optim.schedule = 'cosine'
  c.optim.warmup_epochs = 1.0
  c.l2.mode = 'coupled'
  c.l2.rate = 5e-4
  c.log_every_steps = 100
  c.eval_every_steps = 3900
  c.checkpoint_every_steps = 1950
  if arg == 'nolrn':
    c.model.use_lrn = False
  elif arg == 'smoke':
    set_smoke(c)
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: nolrn, smoke')
  return c
