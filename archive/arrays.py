"""Array results (learning curves, errors per frame, ...) as netCDF4 files via xarray + h5netcdf.

Every numeric variable must say its ``units`` (CF style, "1" for dimensionless), so no number in
the archive is ambiguous. Files are byte-stable (see ilcampaign.archive.hdf5): the same dataset gives the
same bytes, with variables and attributes in the dataset's order, contiguous and uncompressed
unless a variable's encoding asks otherwise.
"""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from ilcampaign.archive.atomic import atomic_path

NUMERIC_KINDS = "iufc"  # bool, str, datetime and timedelta are exempt (xarray encodes the latter's units)


def write_dataset(path: str | os.PathLike[str], ds: xr.Dataset) -> None:
    """Write ``ds`` to ``path`` atomically and byte-stably; ValueError if a numeric variable lacks
    ``units``. (xarray's ``to_netcdf`` cannot make files without HDF5 timestamps, so the dataset
    goes through h5netcdf's store on a file made by ilcampaign.archive.hdf5.)"""
    for name, variable in ds.variables.items():
        if variable.dtype.kind in NUMERIC_KINDS and "units" not in variable.attrs:
            raise ValueError(f"variable {name!r} has no 'units' attribute (use '1' if dimensionless)")
    from ilcampaign.archive.hdf5 import create

    with atomic_path(path) as tmp, create(tmp, track_order=True) as f:
        dump(f, ds, mode="w")


def dump(f: Any, ds: xr.Dataset, *, mode: str, group: str | None = None) -> None:
    """Write ``ds`` as netCDF into the open h5py file ``f`` (at ``group``), through h5netcdf's store."""
    import h5netcdf
    from xarray.backends import H5NetCDFStore

    store = H5NetCDFStore(h5netcdf.File(f, mode), group=group, mode=mode)
    try:
        ds.dump_to_store(store)
    finally:
        store.close()


def read_dataset(path: str | os.PathLike[str]) -> xr.Dataset:
    """The dataset at ``path``, loaded into memory with the file closed (so it may be replaced)."""
    return xr.load_dataset(path, engine="h5netcdf")
