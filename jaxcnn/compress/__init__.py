"""Model compression: methods as training hooks (base.py), pruning
(prune.py, structured.py), low-rank (lowrank.py), artifacts (storage.py,
apply.py) and reports (report.py). See docs/compression.md."""
from jaxcnn.compress import lowrank, prune  # noqa: F401 (register methods)
from jaxcnn.compress import binary  # noqa: F401 (binary, bwn, xnor)
from jaxcnn.compress import pipeline  # noqa: F401 (deep_compression)
from jaxcnn.compress.base import get_method, list_methods, register  # noqa
