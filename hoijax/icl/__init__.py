"""EgoHandICL: masked in-context learning for MANO refinement (in progress)."""
