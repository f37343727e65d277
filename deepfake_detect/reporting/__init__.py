"""Report: a sweep's train x test matrix, folds and paired comparisons, markdown and HTML."""
