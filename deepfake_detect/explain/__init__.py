"""What does the detector look at? Frequency-band occlusion and saliency per test set.

``occlusion`` masks one mel band at a time and records the drop in AUROC and accuracy;
``saliency`` computes Grad-CAM or integrated-gradients maps and averages them per class and
per generator; ``plots`` draws both; ``analysis`` holds the ``explain`` config group and runs
it on a test set (at the end of training when ``explain.enabled=true``); ``cli`` is the
``deepfake-detect-explain`` command for any trained model and any source/distortion.
"""

from deepfake_detect.explain.analysis import (
    ExplainConfig,
    explain_config,
    explain_datamodule,
    explain_test_set,
)

__all__ = ["ExplainConfig", "explain_config", "explain_datamodule", "explain_test_set"]
