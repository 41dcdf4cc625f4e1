"""Cell sources of the colab/ notebooks (build_notebooks.py writes them).

A cell starting with '%md\\n' is markdown. Every notebook starts with the
parameter cell (SMOKE, IN_COLAB, DATA_DIR, WORKDIR) and the Colab-only
install cell, both added by build_notebooks.py.
"""

# ------------------------------------------------------------ quickstart

QUICKSTART = [
    '''%md
## 1. Configure
Every config field is declared, with a comment, in `jaxcnn/config_base.py`;
a config only overrides. In smoke mode scikit-learn's 8x8 digits (bundled,
resized to 32x32) stand in for MNIST.''',
    '''import shutil
from jaxcnn.config_base import base_config

c = base_config()
c.model.name = 'lenet5'
c.data_dir = DATA_DIR
c.optim.learning_rate, c.optim.schedule = 0.05, 'cosine'
c.end_plots = True  # curves, confusion matrix, conv1 filters as PNGs
if SMOKE:
    c.dataset.name, c.input.resize = 'digits', 32
    c.num_train_steps, c.batch_size, c.eval_batch_size = 4, 32, 120
    c.log_every_steps, c.write_summaries = 2, False
else:  # MNIST, zero-padded 28 -> 32 as in the paper
    c.dataset.name, c.input.pad = 'mnist', 2
    c.num_epochs, c.batch_size, c.eval_batch_size = 5.0, 128, 1000
    c.log_every_steps = 100
c.eval_every_steps = 0 if SMOKE else 1000  # and always at the end
c.checkpoint_every_steps = 0 if SMOKE else 1000
workdir = os.path.join(WORKDIR, 'quickstart')
shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, not a resume''',
    '''%md
## 2. Train
The same function `python -m jaxcnn.main` calls: one jitted train step
(augmentation, forward, loss, update), evaluation and orbax checkpoints.''',
    '''from jaxcnn import train
results = train.train_and_evaluate(c, workdir)
print(results['params'])''',
    '''%md
## 3. Curves and the confusion matrix
Written by the end-of-training hook (`config.end_plots`) from
`metrics.jsonl` and the test set.''',
    '''display(Image(os.path.join(workdir, 'curves.png')))
display(Image(os.path.join(workdir, 'confusion_matrix.png')))''',
    '''%md
## 4. Predictions on sample test images
Restore the last checkpoint and classify twelve test images (red: wrong).''',
    '''import numpy as np
from jaxcnn import checkpoint, experiment, parallel, plots
from jaxcnn.data import augment, datasets, sources

splits = sources.load(c.dataset.name, data_dir=c.data_dir)
state, step, _ = checkpoint.load_latest(
    os.path.join(workdir, 'checkpoints'),
    experiment.state_template(c, parallel.make_mesh()))
model = experiment.build_model(c)
idx = np.random.default_rng(0).choice(len(splits.x_test), 12, replace=False)
probs = plots.predict(model, state.params, state.batch_stats,
                      splits.x_test[idx], augment.spec_from_config(c.input),
                      batch_size=c.eval_batch_size)  # the shape already compiled
names = datasets.get_info(c.dataset.name).class_names
display(Image(plots.sample_predictions(
    splits.x_test[idx], splits.y_test[idx], probs, names,
    os.path.join(workdir, 'samples.png'))))''',
]

# ------------------------------------------------------------ alexnet_lrn

ALEXNET = [
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
from jaxcnn import train
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


runs = {}
for use_lrn in (True, False):
    c = alexnet_config(use_lrn)
    wd = os.path.join(WORKDIR, 'alexnet_lrn' if use_lrn else 'alexnet_nolrn')
    shutil.rmtree(wd, ignore_errors=True)
    runs[use_lrn] = (train.train_and_evaluate(c, wd)['params'], wd, c)
for use_lrn, (r, _, _) in runs.items():
    print(f"{'with' if use_lrn else 'without'} LRN: precision@1 "
          f"{r['precision@1']:.4f}, loss {r['loss']:.4f}")''',
    '''%md
## 4. What LRN does to trained activations
conv1's rectified output for one test image, before and after `norm1`
(the trained network's own LRN layer), on one colour scale.''',
    '''from jaxcnn import checkpoint, experiment, parallel
from jaxcnn.data import augment, sources

_, wd, c = runs[True]
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

# ------------------------------------------------------------ cifar10 tutorial

TUTORIAL = [
    '''%md
## 1. The model and its inputs
The TF CIFAR-10 tutorial network (conv1/pool1/norm1, conv2/norm2/pool2,
local3, local4, softmax_linear), trained on random 24x24 crops with flips,
brightness and contrast distortion and per-image standardisation, as the
tutorial's `distorted_inputs`. This notebook uses the momentum + cosine
recipe (`configs/cifar10_tutorial.py:fast`) for fewer epochs.''',
    '''import shutil
from jaxcnn.config_base import base_config, set_cifar_tutorial_input

c = base_config()
c.model.name = 'cifar10_tutorial'
c.data_dir = DATA_DIR
set_cifar_tutorial_input(c)
c.optim.learning_rate, c.optim.momentum = 0.02, 0.9
c.optim.schedule, c.optim.warmup_epochs = 'cosine', 1.0
c.l2.mode, c.l2.rate, c.l2.include = 'loss', 0.004, 'local3|local4'
c.ema_decay = 0.999  # evaluation also uses the moving average of the weights
c.end_plots = True
if SMOKE:  # digits resized to 32x32, then the same 24x24 distortions
    c.dataset.name, c.input.resize = 'digits', 32
    c.num_train_steps, c.batch_size, c.eval_batch_size = 3, 32, 120
    c.log_every_steps, c.write_summaries = 3, False
else:
    c.num_epochs, c.batch_size, c.eval_batch_size = 30.0, 128, 1000
    c.log_every_steps, c.summary_every_steps = 100, 390
c.eval_every_steps = 0 if SMOKE else 1950
c.checkpoint_every_steps = 0 if SMOKE else 1950
workdir = os.path.join(WORKDIR, 'cifar10_tutorial')
shutil.rmtree(workdir, ignore_errors=True)''',
    '''%md
### Distorted inputs
Sixteen training images as stored, and as the train step sees them
(`jaxcnn.data.augment.preprocess_train`, rescaled to [0, 1] for display).''',
    '''import jax
import matplotlib.pyplot as plt
import numpy as np
from jaxcnn import summaries
from jaxcnn.data import augment, sources

splits = sources.load(c.dataset.name, data_dir=c.data_dir)
raw = splits.x_train[:16]
distorted = augment.preprocess_train(raw, jax.random.key(0),
                                     augment.spec_from_config(c.input))
fig, axes = plt.subplots(1, 2, figsize=(10, 5))
for ax, imgs, title in ((axes[0], raw / 255.0, 'stored'),
                        (axes[1], summaries.to_unit(distorted), 'distorted')):
    g = summaries.tile(np.asarray(imgs, np.float32))
    ax.imshow(g[..., 0] if g.shape[-1] == 1 else g, cmap='gray')
    ax.set_title(title)
    ax.set_axis_off()
plt.show()''',
    '''%md
## 2. Train
Every `summary_every_steps` a separate jitted pass writes TensorBoard
histograms and sparsity of every layer's activations (e.g. local3), the
gradients and weights, the distorted batch and the conv1 filters
(`jaxcnn/summaries.py`); the ordinary step stays as fast as before.''',
    '''from jaxcnn import train
results = train.train_and_evaluate(c, workdir)''',
    '''%md
## 3. Raw vs moving-average (EMA) weights
The tutorial evaluates the exponential moving average of the weights; the
final evaluation reports both.''',
    '''for name, r in results.items():
    print(f"{name:6s} weights: precision@1 {r['precision@1']:.4f}, "
          f"top-5 {r['top5']:.4f}, loss {r['loss']:.4f}")
display(Image(os.path.join(workdir, 'curves.png')))''',
    '''%md
## 4. Confusion matrix and the learned conv1 filters''',
    '''display(Image(os.path.join(workdir, 'confusion_matrix.png')))
display(Image(os.path.join(workdir, 'filters.png')))''',
    '''%md
## 5. TensorBoard''',
    '''if IN_COLAB and not SMOKE:
    %load_ext tensorboard
    %tensorboard --logdir {workdir}
else:
    print(f'tensorboard --logdir {workdir}')''',
]

# ------------------------------------------------------------ multi-device

MULTI = [
    '''%md
## 1. Devices
Without a GPU/TPU, XLA can split the host CPU into 8 devices. The flag
must be set before JAX is imported.''',
    '''import shutil
if not shutil.which('nvidia-smi') and 'COLAB_TPU_ADDR' not in os.environ:
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               ' --xla_force_host_platform_device_count=8')
import jax
print(jax.device_count(), 'devices:', jax.devices())''',
    '''%md
## 2. The mesh and a sharded batch
`jaxcnn.parallel` builds a (`data`, `model`) mesh over every device; a
global batch is split along `data`, so each device holds batch/8 rows.''',
    '''import numpy as np
from jaxcnn import parallel
from jaxcnn.data import pipeline

mesh = parallel.make_mesh()
print(mesh)
batch = {'image': np.zeros((64, 8, 8, 1), np.uint8),
         'label': np.zeros((64,), np.int32)}
x = pipeline.put_global(batch, parallel.data_sharding(mesh))['image']
for shard in x.addressable_shards[:4]:
    print(shard.device, shard.index, shard.data.shape)
print('...')''',
    '''%md
## 3. Data-parallel training
The same train step as on one device: `jit` with the batch sharded over
`data`; XLA inserts the gradient all-reduce. `parallel='pmap'` runs the TF
tutorial's explicit towers (`shard_map` + `pmean`) instead.''',
    '''import json
from jaxcnn import train
from jaxcnn.config_base import base_config


def lenet_config(mode):
    c = base_config()
    c.model.name = 'lenet5'
    c.data_dir = DATA_DIR
    c.parallel = mode
    c.optim.learning_rate, c.optim.schedule = 0.05, 'cosine'
    if SMOKE:
        c.dataset.name, c.input.resize = 'digits', 32
        c.num_train_steps, c.batch_size, c.eval_batch_size = 3, 64, 120
        c.log_every_steps, c.write_summaries = 3, False
    else:
        c.dataset.name, c.input.pad = 'mnist', 2
        c.num_epochs, c.batch_size, c.eval_batch_size = 2.0, 256, 1000
        c.log_every_steps = 50
    c.eval_every_steps = c.checkpoint_every_steps = 0
    return c


for mode in (['jit'] if SMOKE else ['jit', 'pmap']):
    wd = os.path.join(WORKDIR, f'multi_device_{mode}')
    shutil.rmtree(wd, ignore_errors=True)
    r = train.train_and_evaluate(lenet_config(mode), wd)
    last = [json.loads(l) for l in open(os.path.join(wd, 'metrics.jsonl'))
            if '"train"' in l][-1]
    print(f"{mode}: precision@1 {r['params']['precision@1']:.4f}, "
          f"{last['examples_per_sec']:.0f} examples/sec on "
          f"{jax.device_count()} devices")''',
    '''%md
On a real multi-GPU machine the same code runs unchanged;
`docs/scaling.md` has measured throughput on 1-8 devices and the
multi-host launch recipe.''',
]

# ------------------------------------------------------------ compression

COMPRESSION = [
    '''%md
## 1. A trained network to compress
The TF CIFAR-10 tutorial net (1.07M parameters; in smoke mode the
quickstart's LeNet-5 on digits). Every method below
starts from this run's checkpoint through
`python -m jaxcnn.compress --workdir BASE --method M --output OUT`, which
fine-tunes briefly and writes a real artifact file and a report.''',
    '''import json, shutil, subprocess
from jaxcnn import train
from jaxcnn.config_base import base_config, set_cifar_tutorial_input

c = base_config()
c.data_dir = DATA_DIR
if SMOKE:  # the quickstart's LeNet-5 on digits stands in (same compiled steps)
    c.model.name = 'lenet5'
    c.dataset.name, c.input.resize = 'digits', 32
    c.optim.learning_rate, c.optim.schedule = 0.05, 'cosine'
    c.num_train_steps, c.batch_size, c.eval_batch_size = 4, 32, 120
    c.log_every_steps, c.write_summaries = 2, False
    EPOCHS = 0.1  # fine-tuning per method
else:
    c.model.name = 'cifar10_tutorial'
    set_cifar_tutorial_input(c)
    c.optim.learning_rate, c.optim.momentum = 0.02, 0.9
    c.optim.schedule, c.optim.warmup_epochs = 'cosine', 1.0
    c.l2.mode, c.l2.rate, c.l2.include = 'loss', 0.004, 'local3|local4'
    c.num_epochs, c.batch_size, c.eval_batch_size = 20.0, 128, 1000
    c.log_every_steps = 100
    EPOCHS = 2.0
c.eval_every_steps = c.checkpoint_every_steps = 0
base_dir = os.path.join(WORKDIR, 'compress_base')
shutil.rmtree(base_dir, ignore_errors=True)
dense = train.train_and_evaluate(c, base_dir)['params']['precision@1']
print(f'dense precision@1 {dense:.4f}')''',
    '''%md
## 2. Low-rank, pruning, quantization, binary networks
Methods are looked up in the CLI's registry, so those added later are
picked up without editing this notebook; missing ones are reported.''',
    '''from jaxcnn.compress.__main__ import METHOD_DEFAULTS

FAMILIES = {
    'low-rank': ['svd'],
    'pruning': ['prune', 'filter_prune'],
    'quantization': ['kmeans', 'int8', 'qat', 'pq', 'qcnn'],
    'binary': ['binary', 'bwn', 'xnor'],
}
SMOKE_METHODS = {'prune'}  # smoke mode: one CLI run keeps the test short
reports = {}
for family, methods in FAMILIES.items():
    for m in methods:
        if m not in METHOD_DEFAULTS:
            print(f'{family}: {m} is not registered in this jaxcnn, skipped')
            continue
        if SMOKE and m not in SMOKE_METHODS:
            print(f'{family}: {m} skipped in smoke mode')
            continue
        out = os.path.join(WORKDIR, f'compress_{m}')
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, '-m', 'jaxcnn.compress', '--workdir', base_dir,
               '--method', m, '--output', out, '--epochs', str(EPOCHS)]
        if SMOKE:
            cmd += ['--set', 'write_summaries=False']
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            print(f'{family}: {m} failed:\\n{p.stderr[-1500:]}')
            continue
        rep = json.load(open(os.path.join(out, 'compression_report.json')))
        reports[m] = (family, out, rep)
        t, a = rep['total'], rep['accuracy']
        print(f"{family}: {m}: {t['compression_ratio']:.2f}x smaller file, "
              f"{t['bits_per_weight']:.2f} bits/weight, precision@1 "
              f"{a['compressed_after_finetune']:.4f}")''',
    '''%md
### Weights before and after
Histograms of each compressed layer's weights in the dense and the
compressed artifact; red lines mark codebook values where a layer has at
most 256 distinct weights (quantized or binary layers).''',
    '''import numpy as np
from jaxcnn import plots
from jaxcnn.compress import storage

for m, (family, out, rep) in reports.items():
    d, _ = storage.load(os.path.join(out, 'dense.jxcz'))
    q, _ = storage.load(os.path.join(out, 'model.jxcz'))
    d, q = storage.flatten(d), storage.flatten(q)
    names = [k for k in d if k.endswith('kernel') and k in q
             and d[k].shape == q[k].shape][:4]
    if not names:
        print(f'{m}: no layer keeps its shape (structural method)')
        continue
    cents = {k: np.unique(q[k][q[k] != 0]) for k in names
             if len(np.unique(q[k])) <= 256}
    display(Image(plots.weight_histograms(
        {k: d[k] for k in names}, {k: q[k] for k in names},
        os.path.join(out, 'weights.png'), centroids=cents,
        title=f'{family}: {m}')))''',
    '''%md
## 3. Distillation and lightweight networks
A small student learns from the trained net's soft targets
(`config.distill`); MobileNetV2 / ShuffleNetV2 are designed small with
depthwise-separable convolutions. Both are trained here from scratch for the
same number of epochs; their ratio is the base's parameter count over
theirs.''',
    '''from jaxcnn import experiment
from jaxcnn.models import flops

base_params = flops.param_count(experiment.params_shape(c, experiment.build_model(c)))
others = {}
students = {'distillation: mlp_small student': dict(model='mlp_small', teacher=True),
            'lightweight: shufflenet_v2 0.5x': dict(model='shufflenet_v2_cifar', width=0.5),
            'lightweight: mobilenet_v2 0.35x': dict(model='mobilenet_v2_cifar', width_multiplier=0.35)}
for name, spec in students.items():
    s = c.copy_and_resolve_references()
    s.model.name = spec['model']
    for k in ('width', 'width_multiplier'):
        if k in spec:
            s.model[k] = spec[k]
    s.l2.mode = 'none'
    if spec.get('teacher'):
        if 'distill' not in s:
            print(f'{name}: this jaxcnn has no config.distill, skipped')
            continue
        s.distill.teacher_workdir = os.path.abspath(base_dir)
    n = flops.param_count(experiment.params_shape(s, experiment.build_model(s)))
    if SMOKE:
        print(f'{name}: {n:,} params (base/this = {base_params / n:.2f}x); training skipped in smoke mode')
        continue
    wd = os.path.join(WORKDIR, 'compress_' + spec['model'])
    shutil.rmtree(wd, ignore_errors=True)
    acc = train.train_and_evaluate(s, wd)['params']['precision@1']
    others[name] = (base_params / n, acc)
    print(f'{name}: {n:,} params (base/this = {base_params / n:.2f}x), precision@1 {acc:.4f}')''',
    '''%md
## 4. The trade-off
File-size ratio for the compressed artifacts, parameter ratio for
distillation and lightweight nets; the dense base at 1x.''',
    '''points = [{'name': 'dense', 'ratio': 1.0, 'accuracy': dense}]
for m, (family, out, rep) in reports.items():
    points.append({'name': f'{family}: {m}',
                   'ratio': rep['total']['compression_ratio'],
                   'accuracy': rep['accuracy']['compressed_after_finetune']})
for name, (ratio, acc) in others.items():
    points.append({'name': name, 'ratio': ratio, 'accuracy': acc})
display(Image(plots.tradeoff(points, os.path.join(WORKDIR, 'tradeoff.png'))))''',
]

NOTEBOOKS = {
    'quickstart': (
        'Quickstart: LeNet-5 on MNIST',
        'Train LeNet-5 with jaxcnn, look at its curves and confusion '
        'matrix, and classify a few test digits.', QUICKSTART),
    'alexnet_lrn': (
        'AlexNet and local response normalisation',
        'The AlexNet architecture table, what LRN computes and how it '
        'reshapes activations, and a with/without-LRN run on CIFAR-10.',
        ALEXNET),
    'cifar10_tutorial': (
        'The TensorFlow CIFAR-10 tutorial in JAX',
        'Distorted inputs, training with TensorBoard summaries, and raw vs '
        'moving-average weights at evaluation.', TUTORIAL),
    'multi_device': (
        'Data-parallel training on many devices',
        'Meshes, sharded batches and data-parallel training; with no '
        'accelerator the CPU is split into 8 devices.', MULTI),
    'compression': (
        'Compressing a CNN: six families',
        'Low-rank, pruning, quantization, binary networks, distillation and '
        'lightweight networks applied to one trained model, ending in one '
        'accuracy-vs-compression plot.', COMPRESSION),
}
