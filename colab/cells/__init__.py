"""Cell sources of the colab/ notebooks, one module per notebook
(build_notebooks.py writes them).

Each module holds TITLE, INTRO (the first markdown cell's text) and CELLS.
A cell starting with '%md\\n' is markdown. Every notebook starts with the
parameter cell (SMOKE, IN_COLAB, DATA_DIR, WORKDIR) and the Colab-only
install cell, both added by build_notebooks.py.
"""
from . import alexnet_lrn, cifar10_tutorial, compression, multi_device
from . import quickstart

# name -> (title, intro, cells), in the order the notebooks are written.
NOTEBOOKS = {
    m.__name__.rsplit('.', 1)[-1]: (m.TITLE, m.INTRO, m.CELLS)
    for m in (quickstart, alexnet_lrn, cifar10_tutorial, multi_device,
              compression)}
