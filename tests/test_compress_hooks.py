"""Method's optional set-up hooks (bind, set_calibration, wrap_model) are
no-ops by default, and the flags that make session.start call them match the
methods that override them."""
from jaxcnn.compress import base, binary, session  # noqa: F401 (registers)


def _method_classes() -> dict[str, type]:
  """name -> class of every registered jaxcnn method."""
  out, todo = {}, [base.Method]
  while todo:
    cls = todo.pop()
    todo.extend(cls.__subclasses__())
    if cls.__module__.startswith('jaxcnn.') and cls.name in base.list_methods():
      out[cls.name] = cls
  return out


def test_plain_method_hooks_are_noops():
  m = base.Method(cfg=None)
  model = object()
  assert m.bind('graph') is None
  assert m.set_calibration(model, [1, 2], {'bn': 1}) is None
  assert m.wrap_model(model) is model
  assert not m.needs_graph and not m.needs_calibration
  assert vars(m) == {'cfg': None}  # the hooks stored nothing


def test_flags_match_the_methods_that_use_them():
  classes = _method_classes()
  assert set(classes) == set(base.list_methods())
  calib = {n for n, c in classes.items() if c.needs_calibration}
  assert calib == {'int8', 'qat', 'qcnn'}
  assert {n for n, c in classes.items() if c.needs_graph} == {'filter_prune'}
  for name, cls in classes.items():  # a flag without its hook or vice versa
    assert cls.needs_calibration == (
        cls.set_calibration is not base.Method.set_calibration), name
    assert cls.needs_graph == (cls.bind is not base.Method.bind), name
  assert classes['xnor'].wrap_model is not base.Method.wrap_model
