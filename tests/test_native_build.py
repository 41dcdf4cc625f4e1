"""jaxcnn.ops.native_build: what the library cache key covers, atomic
builds, and clear errors."""
import os

import pytest

from jaxcnn.ops import native_build


def _source(tmp_path, header_text='#define K 1\n'):
  (tmp_path / 'helper.h').write_text(header_text)
  src = tmp_path / 'k.cc'
  src.write_text('#include <vector>\n#include "helper.h"\n'
                 'extern "C" int k() { return K; }\n')
  return str(src)


def test_key_covers_source_local_headers_flags_and_extra_parts(
    tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCNN_CACHE_DIR', str(tmp_path / 'cache'))
  src = _source(tmp_path)
  base = native_build.library_path('k', src, ['-O2'])
  assert base.startswith(str(tmp_path / 'cache' / 'k'))
  assert base == native_build.library_path('k', src, ['-O2'])
  assert native_build.local_headers(src, open(src, 'rb').read()) == [
      str(tmp_path / 'helper.h')]  # <vector> is not local
  keys = {base, native_build.library_path('k', src, ['-O3']),
          native_build.library_path('k', src, ['-O2'], ['other lib'])}
  (tmp_path / 'helper.h').write_text('#define K 2\n')
  keys.add(native_build.library_path('k', src, ['-O2']))
  assert len(keys) == 4
  # -march=native code is keyed by this CPU's flags as well.
  monkeypatch.setattr(native_build, 'cpu_flags', lambda: 'avx2')
  a = native_build.library_path('k', src, ['-march=native'])
  monkeypatch.setattr(native_build, 'cpu_flags', lambda: 'avx512f')
  assert a != native_build.library_path('k', src, ['-march=native'])


def test_build_compiles_once_and_failures_leave_nothing(tmp_path,
                                                        monkeypatch):
  monkeypatch.setenv('JAXCNN_CACHE_DIR', str(tmp_path / 'cache'))
  try:
    native_build.compiler()
  except FileNotFoundError as e:
    pytest.skip(str(e))
  src = _source(tmp_path)
  path = native_build.build('k', src, ['-O2'])
  stamp = os.stat(path).st_mtime_ns
  assert native_build.build('k', src, ['-O2']) == path
  assert os.stat(path).st_mtime_ns == stamp  # reused, not rebuilt
  bad = tmp_path / 'bad.cc'
  bad.write_text('this is not C++\n')
  out = tmp_path / 'cache' / 'bad' / 'lib.so'
  with pytest.raises(RuntimeError, match='failed'):
    native_build.compile_shared(str(bad), str(out), [])
  assert not os.listdir(out.parent)  # no library, no temporary file


def test_missing_compiler_is_named(monkeypatch):
  monkeypatch.setenv('CXX', '/no/such/compiler')
  with pytest.raises(FileNotFoundError, match='/no/such/compiler'):
    native_build.compiler()
