"""TFDS on an offline machine: the download pre-check answers in seconds, is
bounded for a silent host, tells refused from answering hosts, and still
lets a reachable host download through TFDS."""
import http.server
import socket
import threading
import time

import pytest

from jaxcnn.data import sources
from jaxcnn.data.datasets import get_info
from jaxcnn.errors import DataNotFoundError


# --------------------------------------------------------------- TFDS offline
def test_offline_tfds_download_fails_in_seconds(tmp_path, monkeypatch):
  """A real attempt: on this offline machine TFDS alone retries each URL
  10 times with backoff (minutes); the pre-check makes it seconds."""
  info = get_info('mnist')
  if sources.download_unreachable(sources._download_urls(info)) is None:
    pytest.skip('the download host is reachable: this machine is online')
  monkeypatch.delenv('JAXCNN_DATA_DIR', raising=False)
  import tensorflow  # noqa: F401  a one-off import, not what is timed
  start = time.monotonic()
  with pytest.raises(DataNotFoundError) as e:
    sources.load('mnist', data_dir=str(tmp_path / 'none'),
                 tfds_data_dir=str(tmp_path / 'tfds'), allow_download=True)
  assert time.monotonic() - start < 10
  msg = str(e.value)
  assert '\n' not in msg
  assert f'(1) local directory {tmp_path / "none"}: does not exist' in msg
  assert f'(2) TFDS prepared copy in {tmp_path / "tfds"}' in msg
  assert (f'(3) TFDS download into {tmp_path / "tfds"}: cannot reach '
          'https://storage.googleapis.com/') in msg
  assert 'looks offline' in msg and 'Fix: ' in msg


def test_download_probe_is_bounded_for_a_silent_host(monkeypatch):
  """A host that accepts the connection but never answers (a black hole)."""
  monkeypatch.setattr(sources, 'PROBE_TIMEOUT_S', 0.5)
  with socket.socket() as server:
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    port = server.getsockname()[1]
    start = time.monotonic()
    why = sources.download_unreachable([f'http://127.0.0.1:{port}/a.gz'])
  assert time.monotonic() - start < 3
  assert why.startswith(f'http://127.0.0.1:{port}/ (') and 'timed out' in why


def test_download_probe_refused_and_answering_hosts():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]  # closed once the block ends
  why = sources.download_unreachable([f'http://127.0.0.1:{port}/x'])
  assert why and 'refused' in why.lower()

  class NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
      self.send_response(404)  # any HTTP answer means "reachable"
      self.end_headers()

    def log_message(self, *args):
      pass
  server = http.server.HTTPServer(('127.0.0.1', 0), NotFound)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    url = f'http://127.0.0.1:{server.server_port}/data/x.gz'
    assert sources.download_unreachable([url]) is None
  finally:
    server.shutdown()
    server.server_close()


def test_reachable_host_still_downloads_through_tfds(tmp_path, monkeypatch):
  calls = []

  def fake_tfds(info, tfds_data_dir, download, log):
    calls.append(download)
    if not download:
      raise AssertionError('Dataset mnist: could not find data')
    return 'downloaded'
  monkeypatch.delenv('JAXCNN_DATA_DIR', raising=False)
  monkeypatch.setattr(sources, 'download_unreachable', lambda urls: None)
  monkeypatch.setattr(sources, 'load_tfds', fake_tfds)
  assert sources.load('mnist', tfds_data_dir=str(tmp_path)) == 'downloaded'
  assert calls == [False, True]
