"""medref: semi-supervised medical referring image segmentation, reproducibly."""

__version__ = "0.1.0"
