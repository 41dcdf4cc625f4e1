"""The property behind issue 16's deadlock that the compiler can show: the
collectives of the shipped configs' train and eval steps, compiled for two
devices, form one chain that data dependencies order. (Its own file so that
pytest-xdist's loadfile runs it beside test_multidevice_cli.py's CLI runs.)
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_ORDER_SCRIPT = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from tests import collectives as C
from tests.multidevice import make_config
from jaxcnn import evaluate, experiment, parallel, train
from jaxcnn.data import augment, datasets
out = {}
mesh = parallel.make_mesh()
# A known-bad program: a replicated copy of a batch-sharded input (an
# all-gather) beside a batch sum (an all-reduce); nothing orders the two.
x = jax.ShapeDtypeStruct((8, 10), np.float32,
                         sharding=NamedSharding(mesh, P('data')))
repl = NamedSharding(mesh, P())
bad = jax.jit(lambda v: (v * 2, jnp.sum(v, 0)), out_shardings=(repl, repl)
              ).lower(x).compile().as_text()
out['synthetic'] = len(C.unordered_collectives(bad))
for name in sys.argv[1:]:
  config = make_config(name)
  model = experiment.build_model(config)
  tx, sched = experiment.make_optimizer(config, model, experiment.Plan(10, 100))
  st = experiment.init_state(config, model, tx, mesh)
  shard = jax.tree.map(lambda v: v.sharding, st)
  fn = train.make_train_fn(model, tx, sched, config, st.params, mesh, shard)
  info = datasets.get_info(config.dataset.name)
  b = {'image': jax.ShapeDtypeStruct((config.batch_size, *info.image_shape),
                                     np.uint8),
       'label': jax.ShapeDtypeStruct((config.batch_size,), np.int32)}
  hlo = fn.lower(st, b).compile().as_text()
  ev = evaluate.make_eval_fn(model, augment.spec_from_config(config.input),
                             mesh, shard)
  n = config.eval_batch_size
  eb = {'image': jax.ShapeDtypeStruct((n, *info.image_shape), np.uint8),
        'label': jax.ShapeDtypeStruct((n,), np.int32),
        'mask': jax.ShapeDtypeStruct((n,), np.float32)}
  ehlo = ev.lower(st.params, st.batch_stats, eb).compile().as_text()
  out[name] = [len(C.collectives(hlo)), len(C.unordered_collectives(hlo)),
               len(C.collectives(ehlo)), len(C.unordered_collectives(ehlo))]
print(json.dumps(out))
'''


def test_collectives_of_shipped_steps_are_ordered():
  """Train and eval steps of the shipped configs, compiled for 2 devices:
  one chain of collectives each (no all-gather of logits for top-k)."""
  names = ['quickstart', 'alexnet_cifar', 'resnet20_cifar']
  env = dict(os.environ, PYTHONPATH=ROOT,
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  r = subprocess.run([sys.executable, '-c', _ORDER_SCRIPT, *names], cwd=ROOT,
                     env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  assert out.pop('synthetic') > 0  # the checker does see unordered ones
  for name, (n_train, bad_train, n_eval, bad_eval) in out.items():
    assert n_train >= 1 and n_eval >= 1, name
    assert bad_train == 0 and bad_eval == 0, (name, out[name])


def test_topk_correct_matches_lax_top_k_with_ties():
  from jaxcnn import steps
  rng = np.random.default_rng(0)
  logits = rng.integers(0, 4, (200, 10)).astype(np.float32)  # many ties
  labels = rng.integers(0, 10, 200)
  for k in (1, 3, 5, 10, 12):
    kk = min(k, 10)
    ref = np.any(np.asarray(jax.lax.top_k(logits, kk)[1]) == labels[:, None],
                 axis=-1)
    np.testing.assert_array_equal(
        np.asarray(steps.topk_correct(logits, labels, k)), ref)
