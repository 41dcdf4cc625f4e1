"""AlexNet at ImageNet size (Krizhevsky et al. 2012): 227x227x3 input, conv1
96 11x11/4, conv2/4/5 in the paper's two groups, fc6/fc7 4096 with dropout
0.5, LRN before pooling (the paper's order), the paper's N(0, 0.01) init.

Data, first found wins (jaxcnn/data/streaming.locate_imagenet, docs/data.md):
  1. imagenet2012 prepared by TFDS (ArrayRecord) in --config.tfds_data_dir's
     default ($TFDS_DATA_DIR or ~/tensorflow_datasets): streamed by grain;
  2. an ImageNet image folder at $JAXCNN_IMAGENET_DIR (train/<wnid>/*.JPEG,
     val/<wnid>/*.JPEG): dataset.name='imagefolder', streamed by grain;
  either way each image is decoded on the host to 256x256 (shorter side to
  256, central 256x256: the paper's), then on the device a random 227 crop +
  flip (train) or the central 227 (eval), ImageNet mean/std;
  3. fallback, when neither is present: the registered CIFAR-10 as a
     stand-in, resized to 256 on the device and randomly cropped to 227:
     every layer has the paper's shape (fc6 is 9216x4096 = 37.7M parameters)
     except fc8, which has 10 outputs instead of 1000. No accuracy is claimed
     for it; it exists for shapes, sharding and scaling benchmarks
     (benchmarks/scaling.py feeds it synthetic images:
     python -m benchmarks.scaling --config configs/alexnet_imagenet.py:two_tower).
Any dataset can be forced with flags, e.g.
  --config.dataset.name=imagefolder --config.dataset.root=ROOT (then set
  --config.input.resize=0: the folder is already 256x256 on the host).
Training command:
  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/alexnet_imagenet.py --workdir runs/alexnet_imagenet
Variants:
  ':two_tower' a 2-D mesh (data x model=2; needs an even number of devices):
     fc6 and fc7 (weights, biases, momentum) are split over 'model' by output
     neuron, as the paper's two GPUs each held half of the fc neurons.
     Params + momentum per device: 455 MB -> 237 MB (docs/scaling.md).
  ':standin' the CIFAR-10 stand-in even where ImageNet is present.
  ':smoke' a narrow net (same depth) on 67x67 crops, 3 steps; on the
     stand-in unless $JAXCNN_IMAGENET_DIR names a folder (e.g. a generated
     one), which it then reads at image_size 75.
Expected: no accuracy is claimed for the stand-in; docs/scaling.md records
the measured throughput.
"""
from jaxcnn.config_base import CIFAR10_MEAN, CIFAR10_STD, base_config, set_smoke
from jaxcnn.data import sources, streaming

# ImageNet train-set channel statistics on the 0..255 scale.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def _set_data(c, found, smoke: bool) -> bool:
  """Real ImageNet when `found` (streaming.locate_imagenet), else the
  CIFAR-10 stand-in resized to 256 on the device."""
  if found is None:
    c.dataset.name = 'cifar10'     # stand-in: no ImageNet on this machine
    c.input.resize = 256           # the paper's 256x256 rescale ...
    c.input.mean = CIFAR10_MEAN    # stand-in data's statistics
    c.input.std = CIFAR10_STD
    return False
  name, where = found
  c.dataset.name = name
  if name == 'imagefolder':
    c.dataset.root = where
  c.dataset.image_size = 256       # host: shorter side 256, central 256x256
  c.dataset.resize_mode = 'center_crop'
  c.input.resize = 0               # already 256 when it reaches the device
  c.input.mean = IMAGENET_MEAN
  c.input.std = IMAGENET_STD
  if smoke:
    c.dataset.image_size = 75
  return True


def get_config(arg=None):
  c = base_config()
  c.model.name = 'alexnet_imagenet'  # groups=2, paper init (models/alexnet.py)
  if arg not in (None, '', 'two_tower', 'standin', 'smoke'):
    raise ValueError(f'unknown config argument {arg!r}; valid: two_tower, '
                     'standin, smoke')
  found = None
  if arg == 'smoke':               # a folder only where one is named
    root = sources.resolve_imagenet_dir()
    found = ('imagefolder', root) if root else None
  elif arg != 'standin':
    found = streaming.locate_imagenet()
  real = _set_data(c, found, arg == 'smoke')
  c.input.crop = 227               # random 227 crops (224 + padding)
  c.input.random_crop = True
  c.input.flip = True
  c.input.normalize = 'mean_std'   # the paper subtracts the mean image
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
  # Stand-in: every 10 / 5 CIFAR epochs; ImageNet: about every epoch
  # (1.28M / 128 = 10,009 steps) / quarter epoch.
  c.eval_every_steps = 10000 if real else 3900
  c.checkpoint_every_steps = 2500 if real else 1950
  if arg == 'two_tower':
    c.mesh.model = 2               # 2-D mesh: (devices / 2) x 2
    c.shard_params = 'fc6|fc7'     # split by output neuron over 'model'
  elif arg == 'smoke':
    c.model.features = (16, 32, 48, 48, 32)  # narrow; groups=2 still divide
    c.model.fc_features = (128, 128)
    c.input.crop = 67              # smallest crop AlexNet's pools take
    if c.input.resize:
      c.input.resize = 75
    set_smoke(c)
  return c
