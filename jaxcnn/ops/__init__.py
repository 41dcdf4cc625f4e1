"""Custom array ops used by the models."""
from jaxcnn.ops.lrn import lrn, lrn_caffe

__all__ = ['lrn', 'lrn_caffe']
