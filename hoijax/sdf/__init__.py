"""Signed distance fields of object meshes: grids, differentiable queries, AGILE gating.

Sign convention: positive outside, negative inside (AGILE Eq. 6). Typical use::

    grid = sdf.sdf_grid_from_mesh(verts_obj, faces, resolution=64)  # once, on the host
    d_m = sdf.query_sdf_scaled(grid, points_obj, obj_scale)           # in jit / vmap / grad
    w = sdf.sdf_gate(d_m, sigma_per_m=40.0)
"""

from hoijax.sdf._exact import (
    signed_distance_exact as signed_distance_exact,
    unsigned_distance_exact as unsigned_distance_exact,
    winding_number as winding_number,
)
from hoijax.sdf._gate import DEFAULT_SIGMA_PER_M as DEFAULT_SIGMA_PER_M, sdf_gate as sdf_gate
from hoijax.sdf._grid import (
    NonWatertightMeshError as NonWatertightMeshError,
    SdfGrid as SdfGrid,
    check_watertight as check_watertight,
    mesh_defects as mesh_defects,
    sdf_grid_from_mesh as sdf_grid_from_mesh,
)
from hoijax.sdf._query import query_sdf as query_sdf, query_sdf_scaled as query_sdf_scaled

__all__ = [
    "DEFAULT_SIGMA_PER_M", "NonWatertightMeshError", "SdfGrid", "check_watertight", "mesh_defects",
    "query_sdf", "query_sdf_scaled", "sdf_gate", "sdf_grid_from_mesh", "signed_distance_exact",
    "unsigned_distance_exact", "winding_number",
]
