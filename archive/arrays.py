"""Array results (learning curves, errors per frame, ...) as netCDF4 files via xarray + h5netcdf.

Every numeric variable must say its ``units`` (CF style, "1" for dimensionless), so no number in
the archive is ambiguous.
"""

from __future__ import annotations

import os

import xarray as xr

from archive.atomic import atomic_path

NUMERIC_KINDS = "iufc"  # bool, str, datetime and timedelta are exempt (xarray encodes the latter's units)


def write_dataset(path: str | os.PathLike[str], ds: xr.Dataset) -> None:
    """Write ``ds`` to ``path`` atomically; ValueError if a numeric variable lacks ``units``."""
    for name, variable in ds.variables.items():
        if variable.dtype.kind in NUMERIC_KINDS and "units" not in variable.attrs:
            raise ValueError(f"variable {name!r} has no 'units' attribute (use '1' if dimensionless)")
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")


def read_dataset(path: str | os.PathLike[str]) -> xr.Dataset:
    """The dataset at ``path``, loaded into memory with the file closed (so it may be replaced)."""
    return xr.load_dataset(path, engine="h5netcdf")
