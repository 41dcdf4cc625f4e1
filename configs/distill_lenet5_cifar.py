"""Knowledge distillation on CIFAR-10: ResNet-20 (runs/resnet20_cifar,
88.33%) teaches LeNet-5 (lenet5_cifar.py's recipe, shortened to 20 epochs).

  JAXCNN_DATA_DIR=../shared/data python -m jaxcnn.main \
      --config configs/distill_lenet5_cifar.py:T3 --workdir runs/distill_T3
Variants: ':baseline' the same student on hard labels only; ':T1', ':T3',
':T5', ':T20' frozen-teacher KD at that temperature (lambda = 0.1 on the hard
labels); ':logits' logit matching at T=1; ':smoke' 3 joint-mode steps with a
small teacher trained alongside (no teacher workdir needed). A suffix
'_lr005' (e.g. ':T3_lr005', ':baseline_lr005') sets the learning rate to
0.005: at T >= 3 the T^2-scaled soft loss gave 3-4x the baseline's gradient
norm, and at lr 0.02 KD lost to the baseline (one T=5 seed collapsed).
The sweep over seeds 0-2 is scripts/distill_sweep.sh; results in
docs/distillation_deep_compression.md.
"""
import os

from jaxcnn.config_base import load_sibling, set_smoke

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPERATURES = {'T1': 1.0, 'T3': 3.0, 'T5': 5.0, 'T20': 20.0}


def get_config(arg=None):
  lr = None
  if arg and arg.endswith('_lr005'):
    arg, lr = arg[:-len('_lr005')], 0.005
  c = load_sibling(__file__, 'lenet5_cifar')
  c.num_epochs = 20.0
  c.eval_every_steps = 7800        # the end (390 steps/epoch)
  c.checkpoint_every_steps = 3900
  c.log_every_steps = 390
  c.distill.teacher_workdir = os.path.join(_ROOT, 'runs', 'resnet20_cifar')
  c.distill.hard_weight = 0.1
  c.distill.temperature = 4.0
  if arg in TEMPERATURES:
    c.distill.temperature = TEMPERATURES[arg]
  elif arg == 'baseline':
    c.distill.teacher_workdir = ''
  elif arg == 'logits':
    c.distill.loss = 'logits'
    c.distill.temperature = 1.0
  elif arg == 'smoke':
    set_smoke(c)
    c.distill.teacher_workdir = ''
    c.distill.mode = 'joint'
    c.distill.teacher_model = 'lenet5'
  elif arg:
    raise ValueError(f'unknown config argument {arg!r}; valid: baseline, '
                     f'{", ".join(TEMPERATURES)}, logits, smoke (+ _lr005)')
  if lr is not None:
    c.optim.learning_rate = lr
  return c
