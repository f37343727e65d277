"""``python -m deepfake_detect.bench``: is the data pipeline ever the bottleneck?

See :mod:`deepfake_detect.bench.cli` for what is measured and the README's "Performance"
section for the figures.
"""
