"""Statistics of ilcampaign.engine.analysis.stats on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from ilcampaign.engine.analysis.msd import msd_fft
from ilcampaign.engine.analysis.stats import (
    KB,
    XI,
    arrhenius_fit,
    block_average,
    blocking_levels,
    diffusion_fit,
    linear_fit,
    t_interval,
    yeh_hummer_correction,
    yeh_hummer_extrapolation,
)


def test_linear_fit_matches_scipy_and_weighted_polyfit():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 10, 30)
    y = 2.5 * x - 1.0 + rng.normal(0, 0.3, 30)
    fit, ref = linear_fit(x, y), sps.linregress(x, y)
    assert (fit.slope, fit.intercept) == pytest.approx((ref.slope, ref.intercept), rel=1e-12)
    assert (fit.slope_err, fit.intercept_err) == pytest.approx((ref.stderr, ref.intercept_stderr), rel=1e-10)
    sigma = 0.1 + 0.05 * x
    fit = linear_fit(x, y, sigma)
    coef, cov = np.polyfit(x, y, 1, w=1 / sigma, cov="unscaled")
    assert (fit.slope, fit.intercept) == pytest.approx(tuple(coef), rel=1e-10)
    absolute = linear_fit(x, y, sigma, absolute_sigma=True)
    np.testing.assert_allclose(absolute.cov, cov, rtol=1e-10)
    assert fit.dof == 28


def test_t_interval_is_student_t():
    low, high = t_interval(1.0, 0.5, 4)
    assert high - 1.0 == pytest.approx(2.776445105 * 0.5, rel=1e-8)
    assert low == pytest.approx(2.0 - high)
    with pytest.raises(ValueError):
        t_interval(1.0, 0.5, 0)


def _ar1(phi, n, seed, sigma_e=1.0):
    rng = np.random.default_rng(seed)
    e = rng.normal(0, sigma_e, n)
    x = np.empty(n)
    x[0] = e[0] / np.sqrt(1 - phi**2)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def test_block_average_recovers_the_ar1_standard_error():
    phi, n = 0.9, 2**17
    x = _ar1(phi, n, seed=3)
    variance = 1 / (1 - phi**2)
    true_sem = np.sqrt(variance / n * (1 + phi) / (1 - phi))
    result = block_average(x)
    naive = x.std(ddof=1) / np.sqrt(n)
    assert naive < true_sem / 3  # the correlation matters: a plain SEM would fail the next line
    assert result.sem == pytest.approx(true_sem, rel=0.15)
    assert result.ci[0] < 0.0 < result.ci[1]  # true mean 0
    assert result.block_size >= 32 and result.n_blocks == n // result.block_size
    assert result.dof == result.n_blocks - 1
    half = result.ci[1] - result.mean
    assert half == pytest.approx(sps.t.ppf(0.975, result.dof) * result.sem)


def test_block_average_coverage_over_many_series():
    phi, n = 0.8, 2**13
    true_sem = np.sqrt(1 / (1 - phi**2) / n * (1 + phi) / (1 - phi))
    results = [block_average(_ar1(phi, n, seed=s)) for s in range(60)]
    covered = np.mean([r.ci[0] < 0 < r.ci[1] for r in results])
    assert 0.85 <= covered <= 1.0
    assert np.mean([r.sem for r in results]) == pytest.approx(true_sem, rel=0.2)


def test_blocking_levels_halve_the_series():
    levels = blocking_levels(np.arange(10.0))
    assert [(b, n) for b, n, _ in levels] == [(1, 10), (2, 5), (4, 2)]
    assert levels[0][2] == pytest.approx(np.arange(10.0).std(ddof=1) / np.sqrt(10))


def test_block_average_uncorrelated_picks_small_blocks():
    x = np.random.default_rng(1).normal(5.0, 2.0, 4096)
    result = block_average(x)
    assert result.sem == pytest.approx(2.0 / 64, rel=0.2)
    assert result.block_size == 32  # white noise: SE_B/SE_1 ~ 1, so the smallest B with B^3 > 2 n
    assert result.n_blocks == 128


def test_diffusion_fit_on_a_random_walk_with_known_D():
    # Gaussian steps of variance s2 per axis every dt fs: D = s2 / (2 dt)
    rng = np.random.default_rng(7)
    dt, s2, n_frames, n_sites, n_blocks = 2.0, 0.01, 3000, 60, 5
    x = np.cumsum(rng.normal(0, np.sqrt(s2), (n_frames, n_sites, 3)), axis=0)
    lags = np.arange(n_frames) * dt
    msd = msd_fft(x).mean(axis=1)
    length = n_frames // n_blocks
    blocks = [msd_fft(x[k * length:(k + 1) * length]).mean(axis=1) for k in range(n_blocks)]
    result = diffusion_fit(lags, msd, (20.0, 200.0), blocks)
    true_D = s2 / (2 * dt)
    assert result.D == pytest.approx(true_D, rel=0.05)
    assert result.ci[0] < true_D < result.ci[1]
    assert result.dof == n_blocks - 1 and len(result.block_D) == n_blocks
    assert result.si[0] == pytest.approx(result.D * 1e-5)
    assert "time blocks" in result.method
    with pytest.raises(ValueError, match="window"):
        diffusion_fit(lags, msd, (5000.0, 6000.0), blocks)


def test_yeh_hummer_extrapolation_and_correction():
    T, eta, D_inf = 350.0, 0.05, 3e-10  # K, Pa s, m^2/s
    L = np.array([20.0, 25.0, 30.0, 40.0, 50.0])  # A
    clean = D_inf - KB * T * XI / (6 * np.pi * eta * L * 1e-10)
    rng = np.random.default_rng(2)
    err = 0.01 * D_inf * np.ones_like(L)
    D = clean + rng.normal(0, err)
    result = yeh_hummer_extrapolation(L, D, err, T=T)
    assert result.ci[0] < D_inf < result.ci[1]
    assert result.value == pytest.approx(D_inf, rel=0.05)
    assert result.extra["viscosity"] == pytest.approx(eta, rel=0.3)
    assert result.dof == 3
    exact = yeh_hummer_extrapolation(L, clean, T=T)
    assert exact.value == pytest.approx(D_inf, rel=1e-9)
    assert exact.extra["viscosity"] == pytest.approx(eta, rel=1e-9)
    for length, d in zip(L, clean):
        assert yeh_hummer_correction(d, T, eta, length) == pytest.approx(D_inf, rel=1e-12)


def test_arrhenius_fit_recovers_the_activation_energy():
    Ea, D0 = 25.0, 1e-7  # kJ/mol, m^2/s
    T = np.array([300.0, 325.0, 350.0, 375.0, 400.0, 450.0])
    clean = D0 * np.exp(-Ea * 1000 / (8.314462618 * T))
    rng = np.random.default_rng(4)
    err = 0.03 * clean
    D = clean * (1 + rng.normal(0, 0.03, len(T)))
    result = arrhenius_fit(T, D, err)
    assert result.ci[0] < Ea < result.ci[1]
    assert result.value == pytest.approx(Ea, rel=0.1)
    assert result.dof == len(T) - 2
    exact = arrhenius_fit(T, clean)
    assert exact.value == pytest.approx(Ea, rel=1e-9) and exact.extra["D0"] == pytest.approx(D0, rel=1e-9)
    assert arrhenius_fit(T, clean * 2).extra["D0"] == pytest.approx(2 * D0, rel=1e-9)
