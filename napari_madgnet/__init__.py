"""napari-madgnet: MADGNet medical image segmentation for napari, scripts and the command line.

The core (``model``, ``inference``, ``training``, ``metrics``, ``io``, ``cli``) never imports Qt or
napari; only ``napari_madgnet.widgets`` does.
"""

from napari_madgnet._version import __version__

__all__ = ["__version__"]
