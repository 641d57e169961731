"""New HDF5 files that are byte-stable: the same content written twice gives the same bytes.

HDF5 stamps an object with its access, modification, change and birth times wherever the object
header has room for them (version 2 headers, which anything tracking creation order gets, as
netCDF-4 requires); h5py turns the stamps off for datasets but not for the root group. Files made
here stamp nothing, and their format is pinned to HDF5 1.14's at most, so a newer library does
not change the layout of the same content.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import h5py


def create(path: str | os.PathLike[str], *, track_order: bool = False) -> h5py.File:
    """A new (truncated) HDF5 file at ``path`` without timestamps; ``track_order``: links and
    attributes keep their creation order (h5py's ``track_order``, netCDF-4's convention)."""
    import h5py
    from h5py import h5f, h5p

    fcpl = h5p.create(h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    if track_order:
        order = h5p.CRT_ORDER_TRACKED | h5p.CRT_ORDER_INDEXED
        fcpl.set_link_creation_order(order)
        fcpl.set_attr_creation_order(order)
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5f.LIBVER_EARLIEST, h5f.LIBVER_V114)
    fapl.set_fclose_degree(h5f.CLOSE_STRONG)
    return h5py.File(h5f.create(os.fsencode(path), h5f.ACC_TRUNC, fapl=fapl, fcpl=fcpl))
