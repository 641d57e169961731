"""Statistics for analysis results, each function stating its method: straight-line fits with
standard errors, blocking (Flyvbjerg-Petersen) for correlated series, diffusion coefficients with
time-block uncertainties, Yeh-Hummer finite-size corrections and Arrhenius fits, with Student-t
95 % confidence intervals throughout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

KB = 1.380649e-23  # J/K, exact (SI 2019)
R = 8.314462618  # J/(mol K)
XI = 2.837297  # Yeh-Hummer constant of the cubic periodic lattice
A2_PER_FS_TO_M2_PER_S = 1e-20 / 1e-15


def t_interval(value: float, stderr: float, dof: float, level: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t confidence interval value +- t_{(1+level)/2, dof} * stderr."""
    if dof < 1:
        raise ValueError(f"a Student-t interval needs at least 1 degree of freedom, not {dof}")
    half = stats.t.ppf(0.5 + level / 2, dof) * stderr
    return value - half, value + half


@dataclass(frozen=True)
class LinearFit:
    """y = slope * x + intercept with standard errors, covariance [[slope, .], [., intercept]] and
    the residual degrees of freedom (n - 2)."""

    slope: float
    intercept: float
    slope_err: float
    intercept_err: float
    cov: np.ndarray
    dof: int


def linear_fit(x: np.ndarray, y: np.ndarray, sigma: np.ndarray | None = None, *,
               absolute_sigma: bool = False) -> LinearFit:
    """Least squares straight line, weights 1/sigma^2 when ``sigma`` is given. Covariance is
    (X^T W X)^-1 scaled by the reduced chi^2 (residual variance, n - 2 dof), or unscaled when
    ``absolute_sigma`` (sigma are true standard deviations)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(x)
    if n < 2 or len(y) != n:
        raise ValueError("a line needs at least 2 points with one y per x")
    w = np.ones(n) if sigma is None else 1 / np.asarray(sigma, dtype=np.float64) ** 2
    design = np.column_stack([x, np.ones(n)])
    normal = design.T @ (w[:, None] * design)
    cov = np.linalg.inv(normal)
    slope, intercept = cov @ (design.T @ (w * y))
    dof = n - 2
    if not (absolute_sigma and sigma is not None):
        if dof < 1:
            raise ValueError("standard errors from residuals need at least 3 points")
        cov = cov * float(np.sum(w * (y - slope * x - intercept) ** 2)) / dof
    return LinearFit(float(slope), float(intercept), float(np.sqrt(cov[0, 0])), float(np.sqrt(cov[1, 1])), cov, dof)


@dataclass(frozen=True)
class BlockAverage:
    """Mean of a correlated series with its blocked standard error and 95 % Student-t interval."""

    mean: float
    sem: float
    ci: tuple[float, float]
    block_size: int
    n_blocks: int
    dof: int
    method: str


def blocking_levels(series: np.ndarray) -> list[tuple[int, int, float]]:
    """Flyvbjerg-Petersen blocking: (block size, number of blocks, standard error of the mean from
    the block means) for block sizes 1, 2, 4, ... while at least 2 blocks remain."""
    x = np.asarray(series, dtype=np.float64)
    levels, size = [], 1
    while len(x) >= 2:
        levels.append((size, len(x), float(np.std(x, ddof=1) / np.sqrt(len(x)))))
        x = 0.5 * (x[: len(x) // 2 * 2: 2] + x[1: len(x) // 2 * 2: 2])
        size *= 2
    return levels


def block_average(series: np.ndarray, level: float = 0.95) -> BlockAverage:
    """Mean and its standard error by blocking (Flyvbjerg & Petersen 1989). The plateau of the
    blocked standard error is taken at the smallest block size B with B^3 > 2 n (SE_B / SE_1)^4
    (Lee, Needs & Drummond 2011, as pyblock): there B exceeds the correlation time enough that block
    means are independent. CI: Student-t with n_blocks - 1 dof."""
    x = np.asarray(series, dtype=np.float64)
    levels = blocking_levels(x)
    if len(levels) < 2:
        raise ValueError("blocking needs at least 4 values")
    se1 = levels[0][2]
    chosen = next((lv for lv in levels if lv[0] ** 3 > 2 * len(x) * (lv[2] / se1) ** 4), None) if se1 > 0 else levels[0]
    if chosen is None:
        raise ValueError("no plateau of the blocked standard error: the series is too short for its "
                         "correlation time")
    size, n_blocks, sem = chosen
    mean = float(x.mean())
    return BlockAverage(mean, sem, t_interval(mean, sem, n_blocks - 1, level), size, n_blocks, n_blocks - 1,
                        "Flyvbjerg-Petersen blocking; plateau: smallest B with B^3 > 2 n (SE_B/SE_1)^4; "
                        f"Student-t {int(level * 100)}% CI, n_blocks - 1 dof")


@dataclass(frozen=True)
class Diffusion:
    """Self-diffusion coefficient in A^2/fs (``si`` for m^2/s) with its uncertainty and method."""

    D: float
    stderr: float
    ci: tuple[float, float]
    dof: int
    block_D: np.ndarray
    window: tuple[float, float]
    method: str

    @property
    def si(self) -> tuple[float, float, tuple[float, float]]:
        """(D, stderr, CI) in m^2/s."""
        f = A2_PER_FS_TO_M2_PER_S
        return self.D * f, self.stderr * f, (self.ci[0] * f, self.ci[1] * f)


def _slope_in(lag_times_fs: np.ndarray, msd: np.ndarray, window: tuple[float, float]) -> float:
    """Slope of an MSD over the lag times in [t0, t1]."""
    t = np.asarray(lag_times_fs, dtype=np.float64)[: len(msd)]
    keep = (t >= window[0]) & (t <= window[1])
    if keep.sum() < 2:
        raise ValueError(f"fewer than 2 MSD points in the window {window} fs")
    x, y = t[keep], np.asarray(msd, dtype=np.float64)[keep]
    return float(np.polyfit(x, y, 1)[0])


def diffusion_fit(lag_times_fs: np.ndarray, msd_A2: np.ndarray, window: tuple[float, float],
                  block_msds: list[np.ndarray] | np.ndarray, *, dim: int = 3, level: float = 0.95) -> Diffusion:
    """D = slope / (2 dim) of a least-squares line through the MSD over the lag-time ``window``.
    Estimate from the whole run's MSD; uncertainty from the spread of the same fit on the MSDs of
    n independent time blocks (``block_msds``, e.g. ``MSD.run(n_blocks=n).results.block_msd``, lags
    as ``lag_times_fs``): stderr = std(D_k, ddof=1)/sqrt(n), Student-t CI with n - 1 dof."""
    D = _slope_in(lag_times_fs, msd_A2, window) / (2 * dim)
    block_D = np.array([_slope_in(lag_times_fs, m, window) / (2 * dim) for m in block_msds])
    n = len(block_D)
    if n < 2:
        raise ValueError("the uncertainty needs at least 2 time blocks")
    stderr = float(np.std(block_D, ddof=1) / np.sqrt(n))
    return Diffusion(D, stderr, t_interval(D, stderr, n - 1, level), n - 1, block_D, tuple(window),
                     f"D = slope/{2 * dim} of a linear fit to the MSD over {window[0]:g}-{window[1]:g} fs; "
                     f"stderr from {n} independent time blocks (std/sqrt(n)), Student-t "
                     f"{int(level * 100)}% CI with {n - 1} dof")


@dataclass(frozen=True)
class Extrapolation:
    """Result of a linear fit extrapolated to an infinite parameter (x -> 0)."""

    value: float
    stderr: float
    ci: tuple[float, float]
    slope: float
    slope_err: float
    dof: int
    extra: dict
    method: str


def yeh_hummer_extrapolation(box_lengths_A: np.ndarray, D: np.ndarray, D_err: np.ndarray | None = None,
                             *, T: float | None = None, level: float = 0.95) -> Extrapolation:
    """D_inf from D(L) = D_inf + slope / L (D in m^2/s, L in A): least squares in 1/L (weights 1/D_err^2
    if given, covariance scaled by the residuals), Student-t CI with n - 2 dof. With ``T`` (K) also the
    viscosity the slope implies, eta = -kB T xi / (6 pi slope) in Pa s (``extra["viscosity"]``)."""
    inv_L = 1 / (np.asarray(box_lengths_A, dtype=np.float64) * 1e-10)  # 1/m
    fit = linear_fit(inv_L, D, D_err)
    extra = {}
    if T is not None:
        extra["viscosity"] = -KB * T * XI / (6 * np.pi * fit.slope)
        extra["viscosity_err"] = abs(extra["viscosity"]) * fit.slope_err / abs(fit.slope)
    return Extrapolation(fit.intercept, fit.intercept_err, t_interval(fit.intercept, fit.intercept_err, fit.dof, level),
                         fit.slope, fit.slope_err, fit.dof, extra,
                         "Yeh-Hummer: linear least squares of D over 1/L" + (" weighted by 1/D_err^2" if D_err is not None else "")
                         + f"; intercept = D_inf; Student-t {int(level * 100)}% CI, n - 2 dof")


def yeh_hummer_correction(D_pbc: float, T: float, viscosity_Pa_s: float, L_A: float) -> float:
    """Analytic finite-size correction D_inf = D_pbc + kB T xi / (6 pi eta L) (SI units, L in A)."""
    return D_pbc + KB * T * XI / (6 * np.pi * viscosity_Pa_s * L_A * 1e-10)


def arrhenius_fit(T_K: np.ndarray, D: np.ndarray, D_err: np.ndarray | None = None, *,
                  level: float = 0.95) -> Extrapolation:
    """ln D = ln D0 - Ea / (R T): least squares of ln D over 1/T, weights 1/(D_err/D)^2 if given,
    covariance scaled by the residuals; Ea in kJ/mol with stderr and Student-t CI (n - 2 dof);
    ``value`` is Ea, ``extra`` holds D0 (units of D) and ln D0 with its stderr."""
    D = np.asarray(D, dtype=np.float64)
    sigma = None if D_err is None else np.asarray(D_err, dtype=np.float64) / D
    fit = linear_fit(1 / np.asarray(T_K, dtype=np.float64), np.log(D), sigma)
    Ea, Ea_err = -fit.slope * R / 1000, fit.slope_err * R / 1000
    extra = {"D0": float(np.exp(fit.intercept)), "lnD0": fit.intercept, "lnD0_err": fit.intercept_err}
    return Extrapolation(Ea, Ea_err, t_interval(Ea, Ea_err, fit.dof, level), fit.slope, fit.slope_err, fit.dof,
                         extra, "Arrhenius: least squares of ln D over 1/T" + (" weighted by (D/D_err)^2" if D_err is not None else "")
                         + f"; Ea = -R slope; Student-t {int(level * 100)}% CI, n - 2 dof")
