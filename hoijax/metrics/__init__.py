"""HOLD-compatible evaluation metrics for hands and objects."""
