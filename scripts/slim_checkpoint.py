"""Copy a workdir's latest checkpoint without the optimizer state.

  python scripts/slim_checkpoint.py SRC_WORKDIR DST_WORKDIR [--ema_only]

The copy holds config.json and checkpoints/<step>/default with params,
batch_stats and ema_params only: a third of the bytes for momentum SGD with
EMA. That is what `init_from`, distillation teachers and
`python -m jaxcnn.compress --workdir` read (compress.session.load_dense), so
a slim copy is enough to move a trained model between machines. It cannot
resume training (no optimizer state). --ema_only keeps just the EMA weights,
stored as 'params' (half again the bytes, for tight transfer limits).
"""
import os
import shutil
import sys

import orbax.checkpoint as ocp


def main(src: str, dst: str, ema_only: bool = False) -> None:
  ckdir = os.path.abspath(os.path.join(src, 'checkpoints'))
  steps = sorted(int(d) for d in os.listdir(ckdir) if d.isdigit())
  if not steps:
    sys.exit(f'error: no checkpoint in {ckdir}')
  raw = ocp.StandardCheckpointer().restore(
      os.path.join(ckdir, str(steps[-1]), 'default'))
  keep = {k: raw[k] for k in ('params', 'batch_stats', 'ema_params')
          if raw.get(k)}
  if ema_only:
    if 'ema_params' not in keep:
      sys.exit(f'error: {src} keeps no EMA weights')
    keep['params'] = keep.pop('ema_params')
  os.makedirs(dst, exist_ok=True)
  for name in ('config.json', 'final_metrics.json'):
    if os.path.exists(os.path.join(src, name)):
      shutil.copy(os.path.join(src, name), dst)
  ck = ocp.StandardCheckpointer()
  ck.save(os.path.abspath(os.path.join(dst, 'checkpoints', str(steps[-1]),
                                       'default')), keep)
  ck.wait_until_finished()
  print(f'{src} step {steps[-1]} -> {dst}: {sorted(keep)}')


if __name__ == '__main__':
  args = [a for a in sys.argv[1:] if a != '--ema_only']
  if len(args) != 2:
    sys.exit(__doc__)
  main(args[0], args[1], ema_only='--ema_only' in sys.argv)
