"""AGILE tracking objectives and the losses of the learned models (pure JAX)."""
