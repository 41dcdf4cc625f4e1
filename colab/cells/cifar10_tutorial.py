"""The cells of cifar10_tutorial.ipynb; see __init__.py for the conventions."""

TITLE = 'The TensorFlow CIFAR-10 tutorial in JAX'
INTRO = (
    'Distorted inputs, training with TensorBoard summaries, and raw vs '
    'moving-average weights at evaluation.')

CELLS = [
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
    '''from jaxcnn import runs
results = runs.train(c, workdir)''',
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
