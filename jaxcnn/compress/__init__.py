"""Model compression: methods as training hooks (base.py), pruning
(prune.py, structured.py), low-rank (lowrank.py), artifacts (storage.py,
apply.py) and reports (report.py). See docs/compression.md."""
from jaxcnn.compress import lowrank, prune  # noqa: F401 (register methods)
from jaxcnn.compress.base import get_method, list_methods, register  # noqa
