"""The cells of quickstart.ipynb; see __init__.py for the conventions."""

TITLE = 'Quickstart: LeNet-5 on MNIST'
INTRO = (
    'Train LeNet-5 with jaxcnn, look at its curves and confusion '
    'matrix, and classify a few test digits.')

CELLS = [
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
    '''from jaxcnn import runs
results = runs.train(c, workdir)
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
