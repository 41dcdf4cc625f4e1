"""predict.read_image on whatever a filesystem or PIL can produce: converted
to the dataset's layout (uint8, its channels and size) or refused in one line
naming the file. Every input is generated here with PIL in a tmp dir."""
import os
import socket
import struct
import tempfile
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxcnn import predict

MNIST, CIFAR = ((28, 28), 1), ((32, 32), 3)


def _read(path, hw=(28, 28), channels=1, **kw):
  return predict.read_image(str(path), hw, channels, **kw)


def _refused(path, match, **kw):
  with pytest.raises(predict.ImageError, match=match) as e:
    _read(path, **kw)
  msg = str(e.value)
  assert str(path) in msg and '\n' not in msg and '<_io.' not in msg
  return msg


def _in_thread(fn, timeout=5.0):
  """fn() or an AssertionError if it blocks: a FIFO must never hang."""
  out = {}

  def run():
    try:
      out['value'] = fn()
    except BaseException as e:  # handed to the caller
      out['error'] = e
  t = threading.Thread(target=run, daemon=True)
  t.start()
  t.join(timeout)
  assert not t.is_alive(), f'blocked for more than {timeout} s'
  if 'error' in out:
    raise out['error']
  return out['value']


# --------------------------------------------------------------- special files
def test_fifo_is_refused_without_blocking(tmp_path):
  fifo = tmp_path / 'pipe.png'
  os.mkfifo(fifo)
  try:
    with pytest.raises(predict.ImageError, match='pipe.png: is a FIFO'):
      _in_thread(lambda: _read(fifo))
  finally:  # unblock a reader stuck in open(), if any
    try:
      os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
      pass


def test_dev_zero_is_refused():
  with pytest.raises(predict.ImageError, match='/dev/zero: is a character '
                     'device'):
    _in_thread(lambda: _read('/dev/zero'))


def test_socket_is_refused():
  folder = tempfile.mkdtemp(prefix='jx')  # AF_UNIX paths are short
  path = os.path.join(folder, 's.png')
  with socket.socket(socket.AF_UNIX) as s:
    s.bind(path)
    _refused(path, 'is a socket')
  os.unlink(path)
  os.rmdir(folder)


def test_symlink_loop_and_broken_link_are_refused(tmp_path):
  os.symlink(tmp_path / 'b.png', tmp_path / 'a.png')
  os.symlink(tmp_path / 'a.png', tmp_path / 'b.png')
  _refused(tmp_path / 'a.png', 'symbolic link loop')
  os.symlink(tmp_path / 'missing.png', tmp_path / 'dangling.png')
  _refused(tmp_path / 'dangling.png', 'broken symbolic link')


def test_empty_file_is_refused(tmp_path):
  (tmp_path / 'empty.jpg').write_bytes(b'')
  _refused(tmp_path / 'empty.jpg', 'is empty')


def test_symlink_to_an_image_is_followed(tmp_path):
  Image.new('L', (28, 28), 77).save(tmp_path / 'real.png')
  os.symlink(tmp_path / 'real.png', tmp_path / 'link.png')
  assert _read(tmp_path / 'link.png').max() == 77
  os.mkfifo(tmp_path / 'fifo')
  os.symlink(tmp_path / 'fifo', tmp_path / 'to_fifo.png')
  with pytest.raises(predict.ImageError, match='is a FIFO'):
    _in_thread(lambda: _read(tmp_path / 'to_fifo.png'))


# ---------------------------------------------------------- contents refused
def _png_with_size(w, h):
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data)))
  return (b'\x89PNG\r\n\x1a\n'
          + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0))
          + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


def test_unusable_contents_are_refused_in_one_line(tmp_path):
  (tmp_path / 'notes.png').write_text('this is text,\nnot an image\n')
  _refused(tmp_path / 'notes.png', 'not an image format PIL can read')
  (tmp_path / 'zero.png').write_bytes(_png_with_size(0, 5))
  _refused(tmp_path / 'zero.png', 'not an image format|zero size')
  Image.new('RGB', (64, 64), 'red').save(tmp_path / 'full.png')
  (tmp_path / 'cut.png').write_bytes((tmp_path / 'full.png').read_bytes()[:60])
  _refused(tmp_path / 'cut.png', 'not a readable image')


def test_float_and_32_bit_images_outside_any_range_are_refused(tmp_path):
  Image.fromarray(np.full((4, 4), np.nan, np.float32)).save(tmp_path / 'n.tif')
  _refused(tmp_path / 'n.tif', 'NaN or infinite')
  Image.fromarray(np.full((4, 4), 1e6, np.float32)).save(tmp_path / 'f.tif')
  _refused(tmp_path / 'f.tif', 'outside 0..1 and 0..255')
  Image.fromarray(np.full((4, 4), -5, np.int32)).save(tmp_path / 'i.tif')
  _refused(tmp_path / 'i.tif', 'negative values')


# ---------------------------------------------------------- modes, bit depths
def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
  a = np.array([[0, 257 * 128, 65535, 257 * 17]] * 4, np.uint16)
  Image.fromarray(a).save(tmp_path / 'g16.png')
  assert Image.open(tmp_path / 'g16.png').mode == 'I;16'
  x = _read(tmp_path / 'g16.png', (4, 4), 1)
  assert x.shape == (4, 4, 1) and x.dtype == np.uint8
  assert x[0, :, 0].tolist() == [0, 128, 255, 17]
  rgb = _read(tmp_path / 'g16.png', (4, 4), 3)
  assert rgb.shape == (4, 4, 3) and rgb[0, 2].tolist() == [255, 255, 255]


def test_32_bit_integer_and_float_tiffs_are_scaled(tmp_path):
  Image.fromarray(np.full((4, 4), 65535, np.int32)).save(tmp_path / 'i.tif')
  assert Image.open(tmp_path / 'i.tif').mode == 'I'
  assert _read(tmp_path / 'i.tif', (4, 4), 1).min() == 255
  Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / 'f.tif')
  assert Image.open(tmp_path / 'f.tif').mode == 'F'
  x = _read(tmp_path / 'f.tif', (4, 4), 3)
  assert x.shape == (4, 4, 3) and x.dtype == np.uint8 and (x == 128).all()


def test_alpha_is_composited_over_black(tmp_path):
  rgba = np.zeros((4, 4, 4), np.uint8)
  rgba[..., :3] = 200  # colour hidden under alpha 0 must not show
  rgba[:2, :, 3] = 255
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
  x = _read(tmp_path / 'rgba.png', (4, 4), 3)
  assert (x[:2] == 200).all() and (x[2:] == 0).all()
  la = Image.fromarray(rgba[..., [0, 3]], 'LA')
  la.save(tmp_path / 'la.png')
  g = _read(tmp_path / 'la.png', (4, 4), 1)
  assert g.shape == (4, 4, 1) and (g[:2] == 200).all() and (g[2:] == 0).all()


def test_palette_images_with_and_without_transparency(tmp_path):
  p = Image.new('P', (4, 4), 1)
  p.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
  p.putpixel((0, 0), 2)
  p.save(tmp_path / 'p.png')
  x = _read(tmp_path / 'p.png', (4, 4), 3)
  assert x[1, 1].tolist() == [255, 0, 0] and x[0, 0].tolist() == [0, 0, 255]
  p.save(tmp_path / 'pt.png', transparency=1)  # red is the transparent index
  x = _read(tmp_path / 'pt.png', (4, 4), 3)
  assert x[1, 1].tolist() == [0, 0, 0] and x[0, 0].tolist() == [0, 0, 255]
  p.save(tmp_path / 'pt.gif', transparency=1)
  assert _read(tmp_path / 'pt.gif', (4, 4), 3)[1, 1].tolist() == [0, 0, 0]


def test_other_modes_and_sizes_convert_to_the_dataset_layout(tmp_path):
  b = Image.new('1', (4, 4), 0)
  b.putpixel((0, 0), 1)
  b.save(tmp_path / 'b.png')
  x = _read(tmp_path / 'b.png', (4, 4), 1)
  assert x[0, 0, 0] == 255 and x[1, 1, 0] == 0 and x.dtype == np.uint8
  Image.new('CMYK', (4, 4), (0, 0, 0, 0)).save(tmp_path / 'c.jpg')
  assert Image.open(tmp_path / 'c.jpg').mode == 'CMYK'
  assert _read(tmp_path / 'c.jpg', (4, 4), 3).min() >= 250
  Image.new('YCbCr', (4, 4), (255, 128, 128)).save(tmp_path / 'y.tif')
  assert _read(tmp_path / 'y.tif', (4, 4), 1).min() >= 250
  Image.new('LAB', (4, 4), (255, 128, 128)).save(tmp_path / 'lab.tif')
  assert Image.open(tmp_path / 'lab.tif').mode == 'LAB'
  g = _read(tmp_path / 'lab.tif', (4, 4), 1)  # PIL has no LAB -> L
  assert g.shape == (4, 4, 1) and g.min() >= 250
  Image.new('RGB', (300, 200), (10, 200, 30)).save(tmp_path / 'big.jpg')
  x = _read(tmp_path / 'big.jpg', *CIFAR)
  assert x.shape == (32, 32, 3) and x.dtype == np.uint8
  g = _read(tmp_path / 'big.jpg', *MNIST)
  assert g.shape == (28, 28, 1) and 100 < g.mean() < 160


@pytest.mark.parametrize('fmt', ['gif', 'tiff', 'png', 'webp'])
def test_multi_frame_uses_the_first_and_says_so(tmp_path, fmt):
  frames = [Image.new('RGB', (8, 8), c) for c in ('red', 'blue', 'green')]
  path = tmp_path / f'anim.{fmt}'
  frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
  notes = []
  x = _read(path, (32, 32), 3, note=notes.append)
  assert x.shape == (32, 32, 3) and x.dtype == np.uint8
  assert x[..., 0].min() > 240 and x[..., 2].max() < 15  # red, frame 0
  assert notes == [f'{path}: has 3 frames; using the first']


def test_exif_orientation_is_applied(tmp_path):
  a = np.zeros((40, 80), np.uint8)
  a[:, 40:] = 255  # stored: left half black, right half white
  exif = Image.Exif()
  exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
  Image.fromarray(a).save(tmp_path / 'r.jpg', exif=exif, quality=95)
  x = _read(tmp_path / 'r.jpg', (80, 40), 1)  # upright: 40 wide, 80 high
  assert x.shape == (80, 40, 1)
  assert x[:35].max() < 30 and x[45:].min() > 225  # top black, bottom white

