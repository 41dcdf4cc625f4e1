"""Helpers shared by the checkpoint fault tests (test_checkpoint_integrity.py,
test_live_readers.py): a tiny TrainState whose weights name their step, and
a writer of such steps."""
import numpy as np

from jaxcnn import checkpoint
from jaxcnn.state import TrainState


def state(step, value=1.0):
  return TrainState(step=np.asarray(step, np.int32),
                    params={'w': np.full((4, 3), value, np.float32),
                            'b': np.arange(3, dtype=np.float32)},
                    batch_stats={}, opt_state={'m': np.zeros(3, np.float32)},
                    ema_params={}, rng=np.zeros(2, np.uint32))


def write(directory, steps, keep=10):
  """Saves each of `steps` with weights equal to the step number."""
  ck = checkpoint.Checkpointer(str(directory), keep=keep, async_save=False,
                               writer=True)
  for s in steps:
    ck.save(s, state(s, value=float(s)))
  ck.close()
