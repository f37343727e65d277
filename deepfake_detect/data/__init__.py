"""Data flow: source -> clips -> split -> distortion -> features -> cache -> DataModule."""
