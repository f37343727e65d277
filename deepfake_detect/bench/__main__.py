"""``python -m deepfake_detect.bench``: the command lives in :mod:`deepfake_detect.cli.bench`
(a ``__main__`` module is an entry point, like a console script)."""

import sys

from deepfake_detect.cli.bench import main

sys.exit(main())
