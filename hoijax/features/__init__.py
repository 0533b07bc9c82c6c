"""DINOv2/v3 ViTs in Flax, weight conversion from PyTorch checkpoints, similarity maps."""
