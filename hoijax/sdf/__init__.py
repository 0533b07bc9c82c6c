"""Signed distance fields of object meshes: grids, differentiable queries, AGILE gating."""
