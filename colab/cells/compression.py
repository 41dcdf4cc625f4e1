"""The cells of compression.ipynb; see __init__.py for the conventions."""

TITLE = 'Compressing a CNN: six families'
INTRO = (
    'Low-rank, pruning, quantization, binary networks, distillation and '
    'lightweight networks applied to one trained model, ending in one '
    'accuracy-vs-compression plot.')

CELLS = [
    '''%md
## 1. A trained network to compress
The TF CIFAR-10 tutorial net (1.07M parameters; in smoke mode the
quickstart's LeNet-5 on digits). Every method below
starts from this run's checkpoint through
`python -m jaxcnn.compress --workdir BASE --method M --output OUT`, which
fine-tunes briefly and writes a real artifact file and a report.''',
    '''import json, shutil, subprocess
from jaxcnn import runs
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
dense = runs.train(c, base_dir)['params']['precision@1']
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
    acc = runs.train(s, wd)['params']['precision@1']
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
