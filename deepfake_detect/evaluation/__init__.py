"""Evaluate: threshold, test sets, metrics, intervals, file level, baselines, robustness."""
