"""The cells of alexnet_lrn.ipynb; see __init__.py for the conventions."""

TITLE = 'AlexNet and local response normalisation'
INTRO = (
    'The AlexNet architecture table, what LRN computes and how it '
    'reshapes activations, and a with/without-LRN run on CIFAR-10.')

CELLS = [
    '''%md
## 1. The architecture
Per-layer output shapes, parameters and multiply-adds, counted by
`jaxcnn.models.flops` from the model itself (no compile). First the 2012
ImageNet network, then the CIFAR-sized variant trained below.''',
    '''from jaxcnn import models
from jaxcnn.models import flops
print(flops.summary(models.get_model('alexnet_imagenet', num_classes=1000),
                    (227, 227, 3)))
print()
print(flops.summary(models.get_model('alexnet_cifar'), (32, 32, 3)))''',
    '''%md
## 2. Local response normalisation
Each activation is divided by the activity of its neighbouring channels at
the same position:

$$b_c = \\frac{a_c}{\\left(k + \\alpha \\sum_{j=c-n}^{c+n} a_j^2\\right)^{\\beta}}$$

A quiet neighbourhood leaves the scale near $1/k^\\beta$; a loud one
suppresses everything in it (lateral inhibition). The curve below is that
scale against $\\sum a_j^2$ for the paper's and the TF tutorial's settings.
`jaxcnn.ops.lrn.lrn` is the TF/paper form (alpha on the raw sum),
`lrn_caffe` the Caffe/PyTorch form (alpha divided by the window size).''',
    '''from jaxcnn import plots
display(Image(plots.lrn_response(os.path.join(WORKDIR, 'lrn_response.png'))))''',
    '''%md
One position, eight channels: channel 3 is loud. Channel 4 (inside its
window of radius 2) is suppressed; channel 6 (outside) is not.''',
    '''import numpy as np
from jaxcnn.ops.lrn import lrn

x = np.zeros((1, 1, 1, 8), np.float32)
x[..., 3], x[..., 4], x[..., 6] = 100.0, 1.0, 1.0
y = np.asarray(lrn(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75))
for ch, (a, b) in enumerate(zip(x.ravel(), y.ravel())):
    print(f'channel {ch}: {a:6.1f} -> {b:.4f}')''',
    '''%md
## 3. With and without LRN on CIFAR-10
The same network and recipe twice, once with `use_lrn=False`. (Measured on
the full 100-epoch runs, `docs/results.md`: 87.36% with, 87.39% without, a
tie on one seed.) Smoke mode trains a narrow AlexNet on digits for 3 steps.''',
    '''import shutil
from jaxcnn import runs
from jaxcnn.config_base import base_config, set_cifar_standard_input


def alexnet_config(use_lrn):
    c = base_config()
    c.model.name = 'alexnet_cifar'
    c.model.use_lrn = use_lrn
    c.data_dir = DATA_DIR
    c.optim.learning_rate, c.optim.momentum = 0.02, 0.9
    c.optim.schedule = 'cosine'
    c.l2.mode, c.l2.rate = 'coupled', 5e-4
    if SMOKE:  # digits stand in for CIFAR-10; a narrow AlexNet
        c.dataset.name, c.input.resize = 'digits', 32
        c.model.features, c.model.fc_features = (8, 16, 16, 16, 16), (32, 32)
        c.num_train_steps, c.batch_size, c.eval_batch_size = 3, 32, 120
        c.log_every_steps, c.write_summaries = 3, False
    else:
        set_cifar_standard_input(c)
        c.optim.warmup_epochs = 1.0
        c.num_epochs, c.batch_size, c.eval_batch_size = 10.0, 128, 1000
        c.log_every_steps = 100
    c.eval_every_steps = c.checkpoint_every_steps = 0  # at the end only
    return c


trained = {}
for use_lrn in (True, False):
    c = alexnet_config(use_lrn)
    wd = os.path.join(WORKDIR, 'alexnet_lrn' if use_lrn else 'alexnet_nolrn')
    shutil.rmtree(wd, ignore_errors=True)
    trained[use_lrn] = (runs.train(c, wd)['params'], wd, c)
for use_lrn, (r, _, _) in trained.items():
    print(f"{'with' if use_lrn else 'without'} LRN: precision@1 "
          f"{r['precision@1']:.4f}, loss {r['loss']:.4f}")''',
    '''%md
## 4. What LRN does to trained activations
conv1's rectified output for one test image, before and after `norm1`
(the trained network's own LRN layer), on one colour scale.''',
    '''from jaxcnn import checkpoint, experiment, parallel
from jaxcnn.data import augment, sources

_, wd, c = trained[True]
model = experiment.build_model(c)
state, _, _ = checkpoint.load_latest(
    os.path.join(wd, 'checkpoints'),
    experiment.state_template(c, parallel.make_mesh()))
splits = sources.load(c.dataset.name, data_dir=c.data_dir)
x = augment.preprocess_eval(splits.x_test[:1], augment.spec_from_config(c.input))
_, inter = model.apply({'params': state.params}, x, capture_intermediates=True,
                       mutable=['intermediates'])
conv1 = np.maximum(np.asarray(inter['intermediates']['conv1']['__call__'][0][0]), 0)
display(Image(plots.lrn_comparison(
    conv1, os.path.join(wd, 'lrn_activations.png'),
    depth_radius=model.lrn_depth_radius, bias=model.lrn_bias,
    alpha=model.lrn_alpha, beta=model.lrn_beta)))''',
]
