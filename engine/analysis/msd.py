"""Mean squared displacement by FFT (the fast correlation algorithm of Calandrini et al. 2011, as
tidynamics and MDAnalysis ``EinsteinMSD(fft=True)``), in float64. Site series are gathered block by
block into a scratch file (one contiguous series per site, written and read with pwrite/preadv, not
mapped, so the process's RSS stays bounded for any number of frames) and transformed a batch of
sites at a time."""

from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace

import numpy as np
from scipy import fft

from ilcampaign.engine.analysis.sites import Sites
from ilcampaign.engine.analysis.trajectory import Trajectory

FFT_BYTES = 256 * 2**20  # working memory of one batch of site series in the FFT


def msd_fft(x: np.ndarray) -> np.ndarray:
    """MSD ``(T, S)`` for every lag 0..T-1 of series ``x (T, S, 3)``: MSD(m) = S_1(m) - 2 S_2(m), with
    S_2 the position autocorrelation by zero-padded FFT and S_1 from running sums of |x|^2."""
    n = len(x)
    x = x - x[:1]  # MSD is translation invariant; starting at 0 keeps |x|^2 small (less cancellation)
    size = fft.next_fast_len(2 * n, real=True)
    spectrum = fft.rfft(x, n=size, axis=0)
    acf = fft.irfft((spectrum * spectrum.conj()).real.sum(axis=2), n=size, axis=0)[:n]
    counts = (n - np.arange(n))[:, None]
    rsq = np.einsum("tsk,tsk->ts", x, x)
    head = np.cumsum(rsq, axis=0)  # sum of rsq[0..t]
    total = head[-1]
    # sum over t of rsq[t] + rsq[t+m] for t = 0..n-1-m
    s1 = head[::-1] + (total - np.vstack([np.zeros_like(total), head[:-1]]))
    return s1 / counts - 2 * acf / counts


class MSD:
    """MSD of ``sites`` averaged over sites, for all lags of the frames ``start:stop:step`` of ``traj``.
    ``run`` fills ``results``: ``lags`` (frames), ``times`` (fs), ``msd`` (A^2), ``n_sites``;
    ``by_site`` (lags, sites) when ``per_site``; with ``n_blocks`` > 0 also ``block_msd``
    (n_blocks, block length): the MSD of each of that many consecutive, disjoint time blocks."""

    def __init__(self, traj: Trajectory, sites: Sites, *, scratch_dir: str | os.PathLike[str] | None = None):
        self.traj, self.sites, self.scratch_dir = traj, sites, scratch_dir
        self.results = SimpleNamespace()

    def _gather(self, frames: range, fd: int, block: int | None) -> None:
        """Site positions written to ``fd`` as (sites, frames, 3) float64, one frame block at a time."""
        n, done = len(frames), 0
        for _, positions, _ in self.traj.blocks(frames.start, frames.stop, frames.step, block):
            s = np.ascontiguousarray(self.sites(positions).transpose(1, 0, 2))
            for k in range(len(s)):
                os.pwrite(fd, memoryview(s[k]).cast("B"), (k * n + done) * 24)
            done += s.shape[1]

    def _mean(self, fd: int, n: int, t0: int, t1: int, keep: list | None) -> np.ndarray:
        """Site-averaged MSD of frames t0..t1-1 of the gathered series, FFT over batches of sites."""
        n_sites, length = self.sites.n_sites, t1 - t0
        batch = max(1, FFT_BYTES // (length * 3 * 8 * 8))
        total = np.zeros(length)
        for s0 in range(0, n_sites, batch):
            x = np.empty((min(batch, n_sites - s0), length, 3))
            for k in range(len(x)):
                os.preadv(fd, [memoryview(x[k]).cast("B")], ((s0 + k) * n + t0) * 24)
            m = msd_fft(x.transpose(1, 0, 2))
            total += m.sum(axis=1)
            if keep is not None:
                keep.append(m)
        return total / n_sites

    def run(self, start: int = 0, stop: int | None = None, step: int = 1, *, n_blocks: int = 0,
            per_site: bool = False, block: int | None = None) -> MSD:
        """Gather the site series (``block`` frames per read), then the MSD of all of it and, with
        ``n_blocks``, of each time block."""
        frames = self.traj.frame_range(start, stop, step)
        if len(frames) < 2:
            raise ValueError("an MSD needs at least 2 frames")
        n = len(frames)
        r = self.results
        with tempfile.TemporaryFile(dir=self.scratch_dir) as scratch:
            fd = scratch.fileno()
            self._gather(frames, fd, block)
            keep = [] if per_site else None
            r.msd = self._mean(fd, n, 0, n, keep)
            if per_site:
                r.by_site = np.concatenate(keep, axis=1)
            if n_blocks:
                length = n // n_blocks
                r.block_msd = np.array([self._mean(fd, n, k * length, (k + 1) * length, None)
                                        for k in range(n_blocks)])
        r.n_sites = self.sites.n_sites
        r.lags = np.arange(len(frames)) * frames.step
        r.times = r.lags * self.traj.timestep
        return self
