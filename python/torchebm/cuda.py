"""Not part of this package (TorchEBM 0.8.9's ``torchebm.cuda``): importing it raises ImportError."""

from torchebm._out_of_scope import not_provided

raise not_provided("torchebm", "cuda")
