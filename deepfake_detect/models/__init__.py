"""The detector: torchvision's ResNet18 on one-channel log-mel spectrograms."""
