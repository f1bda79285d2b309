"""``python -m napari_madgnet`` runs the ``madgnet`` command line."""

import sys

from napari_madgnet.cli import main

sys.exit(main())
