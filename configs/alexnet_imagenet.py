"""AlexNet at ImageNet size (Krizhevsky et al. 2012): 227x227x3 input, conv1
96 11x11/4, conv2/4/5 in the paper's two groups, fc6/fc7 4096 with dropout
0.5, LRN before pooling (the paper's order), the paper's N(0, 0.01) init.

Data: imagenet2012 (1.28M JPEGs, ~150 GB) is NOT loadable by jaxcnn's
in-memory sources (data/sources.py holds whole splits as numpy arrays) and is
not in the dataset registry. This config therefore reads the registered
CIFAR-10 as a stand-in, resized to 256 and randomly cropped to 227: every
layer has the paper's shape (fc6 is 9216x4096 = 37.7M parameters) except fc8,
which has 10 outputs instead of 1000. It exists for shapes, sharding and
scaling benchmarks; benchmarks/scaling.py feeds it synthetic images:
  python -m benchmarks.scaling --config configs/alexnet_imagenet.py:two_tower
Training command (stand-in data, slow on CPU):
  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/alexnet_imagenet.py --workdir runs/alexnet_imagenet
Variants:
  ':two_tower' a 2-D mesh (data x model=2; needs an even number of devices):
     fc6 and fc7 (weights, biases, momentum) are split over 'model' by output
     neuron, as the paper's two GPUs each held half of the fc neurons.
     Params + momentum per device: 455 MB -> 237 MB (docs/scaling.md).
  ':smoke' a narrow net (same depth) on 67x67 crops, 3 steps.
Expected: no accuracy is claimed for the stand-in; docs/scaling.md records
the measured throughput.
"""
from jaxcnn.config_base import CIFAR10_MEAN, CIFAR10_STD, base_config, set_smoke


def get_config(arg=None):
  c = base_config()
  c.model.name = 'alexnet_imagenet'  # groups=2, paper init (models/alexnet.py)
  c.dataset.name = 'cifar10'       # stand-in: imagenet2012 is not loadable
  c.input.resize = 256             # the paper's 256x256 rescale ...
  c.input.crop = 227               # ... and random 227 crops (224 + padding)
  c.input.random_crop = True
  c.input.flip = True
  c.input.normalize = 'mean_std'   # the paper subtracts the mean image
  c.input.mean = CIFAR10_MEAN      # stand-in data's statistics
  c.input.std = CIFAR10_STD
  c.batch_size = 128               # paper: 128
  c.eval_batch_size = 500
  c.num_epochs = 90.0              # paper: ~90 passes
  c.optim.learning_rate = 0.01     # paper: 0.01, /10 three times on plateaus
  c.optim.momentum = 0.9
  c.optim.schedule = 'staircase_exp'
  c.optim.decay_rate = 0.1
  c.optim.decay_epochs = 30.0      # fixed stand-in for the plateau drops
  c.l2.mode = 'coupled'            # paper: weight decay 0.0005 in the update
  c.l2.rate = 5e-4
  c.l2.include = '.*'
  c.log_every_steps = 100
  c.eval_every_steps = 3900
  c.checkpoint_every_steps = 1950
  if arg == 'two_tower':
    c.mesh.model = 2               # 2-D mesh: (devices / 2) x 2
    c.shard_params = 'fc6|fc7'     # split by output neuron over 'model'
  elif arg == 'smoke':
    c.model.features = (16, 32, 48, 48, 32)  # narrow; groups=2 still divide
    c.model.fc_features = (128, 128)
    c.input.resize, c.input.crop = 75, 67  # smallest crop AlexNet's pools take
    set_smoke(c)
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: two_tower, '
                     'smoke')
  return c
