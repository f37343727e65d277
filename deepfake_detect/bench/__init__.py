"""``python -m deepfake_detect.bench``: is the data pipeline ever the bottleneck?

:mod:`~deepfake_detect.bench.suite` says what is measured; the figures are in
``docs/performance.md``.
"""
