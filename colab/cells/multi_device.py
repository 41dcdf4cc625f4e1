"""The cells of multi_device.ipynb; see __init__.py for the conventions."""

TITLE = 'Data-parallel training on many devices'
INTRO = (
    'Meshes, sharded batches and data-parallel training; with no '
    'accelerator the CPU is split into 8 devices.')

CELLS = [
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
from jaxcnn import runs
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
    r = runs.train(lenet_config(mode), wd)
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
