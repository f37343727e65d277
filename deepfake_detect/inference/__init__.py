"""Use a trained model: score files with it (``deepfake-detect-predict``)."""
