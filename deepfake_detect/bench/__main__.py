import sys

from deepfake_detect.bench.cli import main

sys.exit(main())
