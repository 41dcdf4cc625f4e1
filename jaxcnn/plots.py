"""PNG plots of a run: curves, confusion matrix, filters, LRN, compression.

Every function writes one PNG (matplotlib, Agg backend, so it works headless)
and returns its path; the notebooks in colab/ display them. Inputs are plain
numpy arrays or a workdir, never live training objects, except
`end_of_training`, which train.py calls when `config.end_plots` is set:

  <workdir>/curves.png            loss (+ moving average), precision@1, lr
  <workdir>/confusion_matrix.png  test set, with per-class precision/recall
  <workdir>/per_class.json        the same numbers
  <workdir>/filters.png           kernels of the first conv layer

The same for any finished workdir (read-only; PNGs go to OUT_DIR):
  python -m jaxcnn.plots WORKDIR OUT_DIR
"""
from __future__ import annotations

import functools
import json
import os
import sys
from typing import Sequence

import numpy as np

import jax

from jaxcnn import checkpoint, experiment, reopen, steps, summaries
from jaxcnn import plugins as plugins_lib
from jaxcnn import workdir as run_dir
from jaxcnn.data import augment, datasets
from jaxcnn.errors import JaxcnnError, one_line
from jaxcnn.metrics import METRICS_FILE
from jaxcnn.ops.lrn import lrn


def _plt():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  _plt().close(fig)
  return path


def read_metrics(workdir: str) -> list[dict]:
  """metrics.jsonl records (jaxcnn/workdir.py: a line cut by a crash is
  skipped; a resumed run's repeated steps keep the last)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: train with jaxcnn >= this '
                            'version to get a metrics log')
  return [r for r in run_dir.read_jsonl(path) if 'split' in r]


def _series(records, split, key):
  rows = [(r['step'], r[key]) for r in records
          if r['split'] == split and key in r]
  return (np.array([s for s, _ in rows]), np.array([v for _, v in rows]))


def training_curves(workdir: str, path: str | None = None) -> str:
  """Loss (per window and its moving average), precision@1, learning rate."""
  recs = read_metrics(workdir)
  plt = _plt()
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  evals = sorted({r['split'] for r in recs if r['split'].startswith('eval')})
  ax = axes[0]
  ax.plot(*_series(recs, 'train', 'loss'), label='train loss', alpha=0.5)
  ax.plot(*_series(recs, 'train', 'loss_ema'), label='moving average (0.9)')
  s, v = _series(recs, 'train', 'cross_entropy')
  if len(v) and not np.allclose(v, _series(recs, 'train', 'loss')[1]):
    ax.plot(s, v, label='train cross-entropy (no L2)', alpha=0.7)
  for e in evals:
    ax.plot(*_series(recs, e, 'loss'), 'o-', label=f'{e} loss')
  ax.set_title('loss')
  ax = axes[1]
  ax.plot(*_series(recs, 'train', 'precision@1'), label='train', alpha=0.6)
  for e in evals:
    s, v = _series(recs, e, 'precision@1')
    ax.plot(s, v, 'o-', label=f'{e} (last {v[-1]:.4f})' if len(v) else e)
  ax.set_title('precision@1')
  ax = axes[2]
  steps, lrs = _series(recs, 'train', 'learning_rate')
  ax.plot(steps, lrs)
  ax.set_title('learning rate')
  if len(lrs):  # from 0, so float32 noise on a constant lr stays invisible
    ax.set_ylim(0, 1.1 * max(lrs))
  for ax in axes:
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  for ax in axes[:2]:
    ax.legend(fontsize=8)
  return _save(fig, path or os.path.join(workdir, 'curves.png'))


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int
              ) -> np.ndarray:
  """[true, predicted] counts."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (np.asarray(labels), np.asarray(preds)), 1)
  return cm


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
  """precision = correct / predicted as c; recall = correct / truly c."""
  diag = np.diag(cm).astype(np.float64)
  return {'precision': diag / np.maximum(cm.sum(0), 1),
          'recall': diag / np.maximum(cm.sum(1), 1)}


def confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str,
                     title: str = '') -> str:
  plt = _plt()
  n = len(class_names)
  pc = per_class(cm)
  fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5),
                             gridspec_kw={'width_ratios': [1.2, 1]})
  im = a.imshow(cm, cmap='Blues')
  fig.colorbar(im, ax=a, fraction=0.046)
  for i in range(n):
    for j in range(n):
      a.text(j, i, str(cm[i, j]), ha='center', va='center', fontsize=7,
             color='white' if cm[i, j] > cm.max() / 2 else 'black')
  a.set_xticks(range(n), class_names, rotation=60, fontsize=8)
  a.set_yticks(range(n), class_names, fontsize=8)
  a.set_xlabel('predicted')
  a.set_ylabel('true')
  acc = np.trace(cm) / max(cm.sum(), 1)
  a.set_title(f'{title} confusion matrix (accuracy {acc:.4f})'.strip())
  x = np.arange(n)
  b.bar(x - 0.2, pc['precision'], 0.4, label='precision')
  b.bar(x + 0.2, pc['recall'], 0.4, label='recall')
  b.set_xticks(x, class_names, rotation=60, fontsize=8)
  b.set_ylim(0, 1)
  b.set_title('per class')
  b.legend(fontsize=8)
  b.grid(alpha=0.3, axis='y')
  return _save(fig, path)


def predict(model, params, batch_stats, images: np.ndarray, input_spec,
            batch_size: int = 500) -> np.ndarray:
  """Class probabilities for uint8 images, in fixed-size (padded) batches so
  one compile serves all of them."""
  fn = jax.jit(functools.partial(steps.predict_step, model=model,
                                 input_spec=input_spec))
  out = []
  for i in range(0, len(images), batch_size):
    x = images[i:i + batch_size]
    pad = batch_size - len(x)
    if pad:
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    out.append(np.asarray(fn(params, batch_stats, x))[:batch_size - pad])
  return np.concatenate(out)


def filters(kernel: np.ndarray, path: str, title: str = '') -> str:
  """Grid of HWIO kernels; 3 input channels as RGB, else the channel mean."""
  k = np.asarray(kernel)
  if k.shape[2] not in (1, 3):
    k = k.mean(axis=2, keepdims=True)
  grid = summaries.tile(summaries.filter_images(k))
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 5))
  ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid,
            cmap='gray' if grid.shape[-1] == 1 else None,
            interpolation='nearest')
  ax.set_axis_off()
  ax.set_title(title or f'{k.shape[3]} filters {k.shape[0]}x{k.shape[1]}')
  return _save(fig, path)


def sample_predictions(images: np.ndarray, labels: np.ndarray,
                       probs: np.ndarray, class_names: Sequence[str],
                       path: str, n: int = 12) -> str:
  """Images with predicted class and confidence; red when wrong."""
  plt = _plt()
  n = min(n, len(images))
  cols = min(6, n)
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows),
                           squeeze=False)
  for i, ax in enumerate(axes.flat):
    ax.set_axis_off()
    if i >= n:
      continue
    img = images[i]
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img,
              cmap='gray' if img.shape[-1] == 1 else None)
    p = int(np.argmax(probs[i]))
    ax.set_title(f'{class_names[p]} {probs[i, p]:.2f}', fontsize=9,
                 color='green' if p == int(labels[i]) else 'red')
  return _save(fig, path)


# The two published LRN settings (SPEC.md §1): AlexNet paper and TF tutorial.
LRN_SETTINGS = {
    'AlexNet: k=2, alpha=1e-4, beta=0.75': (2.0, 1e-4, 0.75),
    'TF tutorial: k=1, alpha=0.001/9, beta=0.75': (1.0, 0.001 / 9, 0.75),
}


def lrn_response(path: str, max_sum_sq: float = 1e5,
                 settings: dict | None = None) -> str:
  """The LRN scale 1/(k + alpha*sum x^2)^beta against sum x^2 (log x axis):
  ~1/k^beta for quiet neighbourhoods, falling as neighbours get loud."""
  plt = _plt()
  s = np.logspace(-2, np.log10(max_sum_sq), 400)
  fig, ax = plt.subplots(figsize=(6, 3.8))
  for name, (k, alpha, beta) in (settings or LRN_SETTINGS).items():
    ax.plot(s, 1.0 / (k + alpha * s) ** beta, label=name)
  ax.set_xscale('log')
  ax.set_xlabel(r'$\sum_j x_j^2$ over the channel window')
  ax.set_ylabel(r'scale $1/(k+\alpha\sum x^2)^\beta$')
  ax.set_title('LRN response')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return _save(fig, path)


def lrn_comparison(acts: np.ndarray, path: str, depth_radius: int = 4,
                   bias: float = 1.0, alpha: float = 0.001 / 9,
                   beta: float = 0.75, channels: int = 4) -> str:
  """One image's activations [H, W, C] before and after jaxcnn.ops.lrn:
  channel maps on a shared colour scale, and the value distributions."""
  a = np.asarray(acts, np.float32)
  b = np.asarray(lrn(a[None], depth_radius, bias, alpha, beta))[0]
  order = np.argsort(-a.reshape(-1, a.shape[-1]).mean(0))[:channels]
  plt = _plt()
  fig, axes = plt.subplots(2, channels + 1, figsize=(2.4 * (channels + 1), 4.8))
  vmax = float(a[..., order].max()) or 1.0
  for row, (x, name) in enumerate(((a, 'without LRN'), (b, 'with LRN'))):
    for j, c in enumerate(order):
      ax = axes[row, j]
      ax.imshow(x[..., c], vmin=0, vmax=vmax, cmap='viridis')
      ax.set_axis_off()
      ax.set_title(f'{name}\nch {c}', fontsize=8)
    ax = axes[row, -1]
    ax.hist(x.ravel(), bins=50, log=True)
    ax.set_title(f'{name}: all values', fontsize=8)
  return _save(fig, path)


def weight_histograms(before: dict[str, np.ndarray],
                      after: dict[str, np.ndarray], path: str,
                      centroids: dict[str, np.ndarray] | None = None,
                      title: str = '') -> str:
  """Per layer, the weight distribution before and after compression; the
  nonzero part of `after` (pruned zeros would dwarf it) and its share of
  zeros; codebook centroids as vertical lines when given."""
  plt = _plt()
  names = list(before)
  fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3),
                           squeeze=False)
  for ax, name in zip(axes[0], names):
    w0 = np.ravel(before[name])
    w1 = np.ravel(after[name])
    nz = w1[w1 != 0]
    bins = np.linspace(w0.min(), w0.max(), 80)
    ax.hist(w0, bins=bins, alpha=0.5, label='before', log=True)
    ax.hist(nz, bins=bins, alpha=0.6, log=True,
            label=f'after (nonzero; {1 - nz.size / w1.size:.0%} zero)')
    for c in (centroids or {}).get(name, ()):
      ax.axvline(float(c), color='red', lw=0.8)
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def tradeoff(points: list[dict], path: str,
             xlabel: str = 'compression ratio') -> str:
  """One marker per method: {'name', 'ratio', 'accuracy'}; dense at 1x."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for p in points:
    ax.scatter([p['ratio']], [p['accuracy']], s=40, zorder=3)
    ax.annotate(p['name'], (p['ratio'], p['accuracy']), fontsize=8,
                xytext=(4, 4), textcoords='offset points')
  ax.set_xscale('log')
  ax.set_xlabel(xlabel)
  ax.set_ylabel('test accuracy')
  ax.set_title('accuracy vs compression')
  ax.grid(alpha=0.3)
  return _save(fig, path)


class EndPlots(plugins_lib.Plugin):
  """config.end_plots as a training plugin: its finish draws the curves,
  confusion matrix and filters into the workdir (one process only)."""
  name = 'end_plots'

  def finish(self, run: plugins_lib.FinishInputs) -> None:
    if run.splits is None:  # a streamed dataset: no test arrays at hand
      print('plots: the confusion matrix needs an in-memory test set; '
            f'{run.config.dataset.name} is streamed, so curves only: ' +
            training_curves(run.workdir,
                            os.path.join(run.workdir, 'curves.png')),
            flush=True)
    elif jax.process_count() == 1:
      end_of_training(run.config, run.model, run.state, run.splits,
                      run.workdir)


def end_of_training(config, model, state, splits, workdir: str,
                    out_dir: str | None = None) -> dict:
  """Curves, test confusion matrix, first-conv filters, with the weights
  config.weights names ('auto': EMA when kept, what the tutorial reports).
  Reads metrics.jsonl from `workdir`, writes into `out_dir` (default:
  `workdir`). `model` and `state` as trained (plugin-wrapped)."""
  out_dir = out_dir or workdir
  out = {}
  if os.path.exists(os.path.join(workdir, METRICS_FILE)):
    out['curves'] = training_curves(workdir,
                                    os.path.join(out_dir, 'curves.png'))
  ema = run_dir.choose_weights(config.weights, bool(state.ema_params),
                               workdir) == 'ema'
  params = jax.device_get(state.ema_params if ema else state.params)
  stats = jax.device_get(state.batch_stats)
  probs = predict(model, params, stats, splits.x_test,
                  augment.spec_from_config(config.input),
                  config.eval_batch_size)
  names = datasets.get_info(config.dataset.name).class_names
  cm = confusion(splits.y_test, probs.argmax(-1), len(names))
  weights = 'EMA' if ema else 'raw'
  out['confusion_matrix'] = confusion_matrix(
      cm, names, os.path.join(out_dir, 'confusion_matrix.png'),
      title=f'{config.model.name} ({weights} weights)')
  pc = per_class(cm)
  with open(os.path.join(out_dir, 'per_class.json'), 'w') as f:
    json.dump({'weights': weights, 'class_names': list(names),
               'confusion': cm.tolist(),
               **{k: v.tolist() for k, v in pc.items()}}, f, indent=1)
  conv = summaries.first_conv(model, experiment.input_shape(config))
  kernel = summaries.kernel_at(params, conv) if conv else None
  if kernel is not None and np.ndim(kernel) == 4:
    out['filters'] = filters(kernel, os.path.join(out_dir, 'filters.png'),
                             f'{conv} ({weights} weights)')
  print('plots: ' + ', '.join(out.values()), flush=True)
  return out


def main(argv) -> int:
  try:
    return _main(argv)
  except JaxcnnError as e:
    print(f'error: {one_line(e)}', file=sys.stderr)
    return e.exit_code


def _main(argv) -> int:
  if len(argv) != 3:
    print('usage: python -m jaxcnn.plots WORKDIR OUT_DIR', file=sys.stderr)
    return 2
  workdir, out_dir = argv[1], argv[2]
  c = reopen.config_of(workdir)
  if not checkpoint.complete_steps(os.path.join(workdir, 'checkpoints')):
    # never plot a confusion matrix of untrained weights
    if not os.path.exists(os.path.join(workdir, METRICS_FILE)):
      print(f'error: {workdir} has neither a checkpoint nor {METRICS_FILE}',
            file=sys.stderr)
      return 2
    os.makedirs(out_dir, exist_ok=True)
    path = training_curves(workdir, os.path.join(out_dir, 'curves.png'))
    print(f'{workdir}: no checkpoint, so training curves only: {path}')
    return 0
  run = reopen.reopen(workdir, c)
  splits = experiment.load_splits(c)
  print(f'{workdir}: step {run.step}')
  # The restored state with the plugins' eval view of its weights.
  view = run.state.replace(params=run.params, ema_params={})
  chosen = c.copy_and_resolve_references()
  chosen.weights = 'params'  # run.params are already the chosen weights
  end_of_training(chosen, run.model, view, splits, workdir, out_dir)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
