"""predict reads only, and compress writes only inside --output: no stray
files next to the trained workdir, in the working directory or in $HOME,
apart from libraries' caches under ~/.cache (matplotlib's font list here;
jaxcnn's decoded-data cache, config.cache_dir, lives there too)."""
import os

import numpy as np
from PIL import Image
from jaxcnn import runs


def _files(root):
  return {os.path.relpath(os.path.join(d, f), root)
          for d, _, fs in os.walk(root) for f in fs}


def test_predict_and_compress_write_only_inside_their_dirs(
    tiny_config, tmp_path, monkeypatch):
  from jaxcnn import predict
  from jaxcnn.compress import __main__ as compress_cli
  dense = tmp_path / 'dense'
  tiny_config.num_train_steps = 3
  tiny_config.write_summaries = False
  runs.train(tiny_config, str(dense))
  img = tmp_path / 'in' / 'digit.png'
  img.parent.mkdir()
  Image.fromarray(np.full((8, 8), 128, np.uint8)).save(img)
  cwd, home = tmp_path / 'cwd', tmp_path / 'home'
  cwd.mkdir()
  home.mkdir()
  monkeypatch.chdir(cwd)
  monkeypatch.setenv('HOME', str(home))
  before = _files(tmp_path)

  assert predict.main(['--workdir', str(dense), str(img)]) == 0
  assert _files(tmp_path) == before

  assert compress_cli.main(['--workdir', str(dense), '--method', 'prune',
                            '--output', 'out', '--epochs', '0.05']) == 0
  new = _files(tmp_path) - before
  outside = [f for f in new
             if not f.startswith(os.path.join('cwd', 'out') + os.sep)
             and not f.startswith(os.path.join('home', '.cache') + os.sep)]
  assert new and not outside, outside
  assert 'model.jxcz' in {os.path.basename(f) for f in new}
