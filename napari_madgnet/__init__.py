"""napari-madgnet: MADGNet medical image segmentation for napari, scripts and the command line."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-madgnet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.1.0.dev0"

__all__ = ["__version__"]
