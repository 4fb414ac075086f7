"""Carrying a scoring plan out: :func:`score_images` walks the pictures in a straight line, file ->
:mod:`scorezoo.data` (decode, resize or tile, quantise) -> :mod:`scorezoo.dequantization` (uniform noise, or
``u ~ q(u | k)`` of the variational dequantizer) -> :mod:`scorezoo.likelihood` (the probability-flow ODE with the
model's score, or the bound) -> bits/dim per image (:class:`BitsPerDimResult`).

Randomness: draw ``j`` of image ``i`` has its own generator, seeded by :func:`draw_seed` from ``(seed, i, j)``
(:func:`draw_generators`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..dequantization import bits_per_dim as _bits_per_dim
from ..dequantization import dequantize
from ..likelihood.ode import short_repr
from ..utils import Generators, check_generator, generator_rows, rand
from .plan import ScoringPlan

if TYPE_CHECKING:
    from ..pipeline import ScorePipeline

__all__ = ["score_images", "BitsPerDimResult", "draw_seed", "draw_generators", "open_pictures", "sample_tiles",
           "estimate_seconds"]


def draw_seed(seed: int, index: int, draw: int) -> int:
    """The seed of image ``index``'s dequantization draw ``draw``: a hash of the three alone (numpy's
    SeedSequence), so that its noise and probes are the same whatever process, batch or run scores it."""
    hi, lo = np.random.SeedSequence([seed, index, draw]).generate_state(2, np.uint32)
    return (int(hi) << 32 | int(lo)) >> 1  # 63 bits: torch.Generator.manual_seed takes any of them


def draw_generators(seed: int, indices, num_repeats: int) -> list[torch.Generator]:
    """``len(indices) * num_repeats`` CPU generators, draw ``j`` of image ``indices[k]`` at ``k * num_repeats + j``
    (the order :meth:`ScorePipeline.bits_per_dim <scorezoo.pipeline.ScorePipeline.bits_per_dim>` takes)."""
    return [torch.Generator().manual_seed(draw_seed(seed, int(i), j)) for i in indices for j in range(num_repeats)]


@dataclass(repr=False)
class BitsPerDimResult:
    """Bits/dim of a batch of pictures (:func:`score_images`): one entry per image.

    An image is scored as one model-size input (resized if needed) or, when tiled, as the mean over its
    model-size patches at its own resolution; a patch's bits/dim is the mean over ``num_repeats`` dequantization
    draws.

    Attributes:
        bpd: ``(B,)`` bits/dim per image (a tiled image's mean over its patches, i.e. its total bits over the pixels
            scored).
        stderr: ``(B,)`` standard error of ``bpd``: over the draws for an untiled image (NaN when
            ``num_repeats == 1``), over the patches for a tiled one. It covers the dequantization noise and, with
            Hutchinson's divergence, the probe noise (each draw has its own probe).
        nfe: ``(B,)`` score evaluations of the solve that scored the image (the largest over its solves when
            tiled; one evaluation scores every sample of a solve once); 0 for the bound.
        bpd_repeats: ``(num_repeats, B)`` bits/dim of each draw (a tiled image's mean over its patches).
        transforms: per image, the preprocessing applied, and for a tiled image how it was tiled.
        num_patches: ``(B,)`` patches scored per image (1 when not tiled; the sample's size when the plan's
            ``max_tiles`` sampled the tiles).
        total_patches: ``(B,)`` patches the image holds (more than ``num_patches`` when sampled).
        pixels_scored: ``(B,)`` pixels scored per image (the model's H × W when not tiled).
        times: ``(N,)`` the ODE times of ``bpd_path`` (with ``times=`` or a schedule), else ``None``.
        bpd_path: ``(N, num_repeats, B)``: the bits/dim the probability flow has accounted for by each of ``times``
            (the divergence integral from eps, in bits/dim, a tiled image's mean over its patches), else ``None``.
        bits_maps: with a bits map, per image the bits of each dimension ``(C, H', W')`` at the scored size (mean
            over the draws; NaN on the tiles a sample left out); their mean is ``bpd``. Else ``None``.
        tiled: per image, whether it was tiled.
    """

    bpd: torch.Tensor
    stderr: torch.Tensor
    nfe: torch.Tensor
    bpd_repeats: torch.Tensor
    transforms: list[str] = field(default_factory=list)
    num_patches: torch.Tensor | None = None
    pixels_scored: torch.Tensor | None = None
    times: torch.Tensor | None = None
    bpd_path: torch.Tensor | None = None
    bits_maps: list[torch.Tensor] | None = None
    tiled: list[bool] = field(default_factory=list)
    total_patches: torch.Tensor | None = None

    @property
    def sampled(self) -> list[bool]:
        """Per image, whether its bits/dim is an estimate from a sample of its tiles."""
        if self.total_patches is None or self.num_patches is None:
            return [False] * len(self.bpd)
        return (self.total_patches > self.num_patches).tolist()

    __repr__ = short_repr


@dataclass
class _Input:
    """One picture as the model takes it: ``patches (N, *S)`` levels (one when not tiled), its transform in words,
    its tile grid ``(rows, cols)`` when tiled, and the indices of the scored tiles in the grid when sampled."""

    patches: torch.Tensor
    transform: str
    grid: tuple[int, int] | None = None
    index: torch.Tensor | None = None

    @property
    def total(self) -> int:
        """Patches the picture holds."""
        return len(self.patches) if self.index is None else self.grid[0] * self.grid[1]


def sample_tiles(num_tiles: int, max_tiles: int | None, seed: int) -> torch.Tensor | None:
    """Sorted indices of a uniform random sample of ``max_tiles`` of ``num_tiles`` tiles without replacement, drawn
    from ``seed`` alone (the same picture size and seed give the same tiles); ``None`` when every tile is scored
    (``max_tiles`` is ``None`` or not below ``num_tiles``)."""
    if max_tiles is None or num_tiles <= max_tiles:
        return None
    perm = torch.randperm(num_tiles, generator=torch.Generator().manual_seed(int(seed)))
    return perm[:max_tiles].sort().values


def _inputs(pipe: "ScorePipeline", images: Any, tile: bool | None, invert: bool, max_tiles: int | None = None,
            tile_seed: int = 0) -> list[_Input]:
    """Each image as model-size input(s): resized (:func:`scorezoo.data.to_levels`), or cut into the model's tiles at
    its own resolution (:func:`scorezoo.data.tile_levels`; a fully convolutional model's: the fewest equal tiles of
    at most :attr:`~scorezoo.pipeline.ScorePipeline.max_tile_size`, :func:`scorezoo.data.cover_levels`) when
    ``tile`` says so or the model tiles pictures at least as large as itself; with ``max_tiles``, a picture of more
    tiles keeps a seeded sample of them (:func:`sample_tiles`).

    Raises:
        ValueError: ``tile=True`` for arrays of levels, a picture smaller than one tile with ``tile=True``, or what
            :mod:`scorezoo.data` refuses (unreadable files, bad arrays).
    """
    from ..data import is_picture, load_image, to_levels

    if tile is True and not is_picture(images):
        raise ValueError("tile=True needs pictures (file paths or PIL images), not arrays of levels.")
    if is_picture(images) and len(pipe.data_shape) == 3:
        images = open_pictures(images, pipe.data_shape)
    if tile is False or not is_picture(images) or (tile is None and not pipe.tiles_larger_images):
        levels, transforms = to_levels(images, data_shape=pipe.data_shape, num_levels=pipe.num_levels, invert=invert)
        return [_Input(levels[i:i + 1], transforms[i]) for i in range(len(levels))]
    if len(pipe.data_shape) != 3:
        raise ValueError(f"this model's data are not images (shape {pipe.data_shape}): pass an array.")
    items = [images] if not isinstance(images, (list, tuple)) else list(images)
    if not items:
        raise ValueError("empty batch: give at least one image.")
    c, h, w = pipe.data_shape
    out = []
    for item in items:
        full = load_image(item, data_shape=pipe.data_shape, num_levels=pipe.num_levels, invert=invert, resize=False)
        if tile or (full.levels.shape[1] >= h and full.levels.shape[2] >= w):
            tiles = pipe.tile_picture(full.levels)
            text = f"{full.transform}; tiled at its own resolution: {tiles.border}"
            index = sample_tiles(len(tiles.patches), max_tiles, tile_seed)
            patches = tiles.patches
            if index is not None:
                patches = patches[index]
                text += (f"; a random sample of {len(index)} of its {len(tiles.patches)} tiles scored (seed "
                         f"{tile_seed}): its bits/dim is an estimate of the whole picture's")
            out.append(_Input(patches, text, tiles.grid, index))
        else:
            li = load_image(item, data_shape=pipe.data_shape, num_levels=pipe.num_levels, invert=invert)
            out.append(_Input(li.levels[None], li.transform))
    return out


def open_pictures(images, data_shape) -> list:
    """Decode each picture file once (PIL images pass through) and refuse a picture smaller than the model on either
    side: it would be upscaled, and its bits/dim would be those of pixels the upscale invented.

    Args:
        images: a picture file path or PIL image, or a list of them.
        data_shape: the model's ``(C, H, W)``.

    Returns:
        the pictures as PIL images, in order.

    Raises:
        ValueError: a file :func:`scorezoo.data.open_image` cannot read, or a picture smaller than ``W × H`` (the
            message names the file and both sizes).
    """
    from ..data import open_image

    c, h, w = data_shape
    out = []
    for item in images if isinstance(images, (list, tuple)) else [images]:
        named = isinstance(item, (str, os.PathLike))
        img = open_image(item) if named else item
        if img.width < w or img.height < h:
            name = str(item) if named else "the picture"
            raise ValueError(f"{name} is {img.width}×{img.height}, smaller than the model's {w}×{h}: scoring it would "
                             "mean upscaling it, and the bits/dim would be those of invented pixels; give a picture of "
                             f"at least {w}×{h}, or a model of smaller pictures.")
        out.append(img)
    return out


def estimate_seconds(pipe: "ScorePipeline", image: Any, plan: ScoringPlan, *, num_tiles: int, probe_tiles: int = 64,
                     invert: bool = False) -> float:
    """Seconds that scoring all ``num_tiles`` tiles of ``image`` with ``plan`` would take on this machine, now:
    the time of scoring a seeded sample of ``probe_tiles`` of them (at most one solve), scaled by
    ``num_tiles / probe_tiles``. A rough figure (a small solve costs a little more per tile than a full one; an
    adaptive solver's steps vary), said before a long exact run starts.

    Raises:
        ValueError: as :func:`score_images`.
    """
    import time

    n = max(1, min(int(probe_tiles), int(num_tiles), plan.max_batch_size // plan.num_repeats))
    probe = plan.replace(max_tiles=n, bits_map=False)
    t0 = time.perf_counter()
    score_images(pipe, [image], probe, generator=torch.Generator().manual_seed(0), invert=invert)
    return (time.perf_counter() - t0) * num_tiles / n


def score_images(pipe: "ScorePipeline", images: Any, plan: ScoringPlan, *, generator: Generators = None,
                 invert: bool = False, times: torch.Tensor | None = None) -> BitsPerDimResult:
    """Bits/dim of integer images under ``pipe``, carried out as ``plan`` says.

    For each draw ``u`` (uniform, or ``u ~ q(u | k)`` of the model's dequantizer), the levels ``k`` become
    ``x = lo + (hi - lo)(k + u) / K`` and ``bpd = (-log p_eps(x) + log q(u | k) - D log((hi - lo) / K)) / (D ln 2)``
    (:func:`scorezoo.dequantization.bits_per_dim`; Theis et al. 2016; Ho et al. 2019, eq. 11); the result is the
    mean over the draws (and over the patches of a tiled picture) with its standard error.

    Args:
        pipe: the model.
        images: integer levels ``(B, H, W)``, ``(B, H, W, C)`` or ``(B, C, H, W)``, images in [0, 1], PIL images or
            file paths (:mod:`scorezoo.data`).
        plan: a :class:`ScoringPlan` for ``pipe``.
        generator: one CPU generator for the call, or ``B * num_repeats`` of them (draw ``j`` of image ``i`` at
            ``i * num_repeats + j``, e.g. :func:`draw_generators`): each draws its dequantization noise and then its
            probes (those of all its patches, in order, when tiled).
        invert: pictures only: ``v -> 1 - v`` (:func:`scorezoo.data.load_image`).
        times: ODE times at which to report the bits/dim accounted for so far (``bpd_path``); not with a schedule,
            which reports at its own steps.

    Returns:
        :class:`BitsPerDimResult`.

    Raises:
        ValueError: bad images (shape, values, unreadable files, a picture smaller than one patch with ``tile=True``),
            a wrong number of generators, options the solver refuses.
    """
    from ..likelihood import likelihood_bound, log_likelihood

    inputs = _inputs(pipe, images, plan.tile, invert, plan.max_tiles, plan.tile_seed)
    owner = torch.cat([torch.full((len(p.patches),), i, dtype=torch.long) for i, p in enumerate(inputs)])
    n, b, r = len(owner), len(inputs), plan.num_repeats
    check_generator(generator, b * r)
    bpd = torch.empty(n, r, dtype=torch.float64)
    nfe = torch.zeros(n, dtype=torch.long)
    per_dim: list = [None] * n
    paths: dict = {}
    path_times = None
    kwargs = plan.likelihood_kwargs()
    # the pictures' patches by shape (one shape per picture; a fully convolutional model's tiles follow the
    # picture's size), each shape solved on its own, in the order of the pictures
    first = torch.cat([torch.tensor([0]), torch.cumsum(torch.tensor([len(p.patches) for p in inputs]), 0)])
    groups: dict = {}
    for i, p in enumerate(inputs):
        groups.setdefault(tuple(p.patches.shape[1:]), []).append(i)
    for shape, members in groups.items():
        rows = torch.cat([torch.arange(first[i], first[i + 1]) for i in members])
        levels = torch.cat([inputs[i].patches for i in members])
        dim = math.prod(shape)
        # all draws first, so that one solve holds every draw of its inputs; with per-draw generators, row (p, j)
        # of the noise (input p, draw j) is drawn from generator[owner[p] * r + j]
        v = torch.stack([rand(levels.shape, generator=generator_rows(generator, owner[rows] * r + j),
                              device=levels.device, dtype=pipe.dtype) for j in range(r)], 1)
        if plan.dequantization == "variational":
            from ..dequantization.variational import sample_dequantization

            u, log_q = sample_dequantization(pipe.dequantizer, levels, v, plan.max_batch_size)
        else:
            u, log_q = v, None
        x = dequantize(levels[:, None], u, num_levels=pipe.num_levels, data_range=pipe.data_range)
        # the dequantization offset, bits per dimension
        off = _bits_per_dim(torch.zeros(1, dtype=torch.float64), dim, num_levels=pipe.num_levels,
                            data_range=pipe.data_range).item()
        for sl, gen in _solves(owner[rows], r, _batch_size(plan.max_batch_size, dim), generator, pipe):
            xb = x[sl].flatten(0, 1).to(pipe.device)
            at = rows[sl]
            if plan.estimator == "ode":
                res = log_likelihood(pipe.model, pipe.sde, xb, eps=pipe.eps, generator=gen, times=times, **kwargs)
                logp, nfe[at] = res.logp, res.nfe
                if res.logp_per_dim is not None:
                    pd = -res.logp_per_dim.double().cpu() / math.log(2) + off
                    if log_q is not None:
                        pd = pd + log_q[sl].flatten(0, 1) / math.log(2)
                    for k, row in zip(at.tolist(), pd.view(len(sl), r, *shape).mean(1)):
                        per_dim[k] = row
                if res.delta_logp_path is not None:
                    path_times = res.times.cpu()
                    path = (-res.delta_logp_path.double().cpu() / (dim * math.log(2))).view(-1, len(sl), r)
                    paths.update(zip(at.tolist(), path.unbind(1)))
            else:
                logp = -likelihood_bound(pipe.model, pipe.sde, xb, eps=pipe.eps, generator=gen, **kwargs).nll
            lq = None if log_q is None else log_q[sl].flatten(2).sum(2).flatten()
            bpd[at] = _bits_per_dim(logp.double().cpu(), dim, num_levels=pipe.num_levels,
                                    data_range=pipe.data_range, log_q=lq).view(len(sl), r)
    path = torch.stack([paths[k] for k in range(n)], 1) if paths else None
    return _per_image(pipe, inputs, owner, bpd, nfe, per_dim if per_dim[0] is not None else [], path, path_times)


#: dimensions per solve at most, over its inputs and draws, unless one input alone is larger: a fully convolutional
#: model's large tiles are solved a few at a time (memory stays bounded), small patches ``max_batch_size`` at a time
MAX_SOLVE_DIMS = 3 * 512 * 512


def _batch_size(max_batch_size: int, dim: int) -> int:
    """Inputs × draws per solve: ``max_batch_size``, fewer for inputs so large that ``max_batch_size`` of them
    would pass :data:`MAX_SOLVE_DIMS`, and at least one."""
    return max(1, min(int(max_batch_size), MAX_SOLVE_DIMS // max(1, int(dim))))


def _solves(owner: torch.Tensor, r: int, max_batch_size: int, generator: Generators, pipe: "ScorePipeline"):
    """``(input indices, their draws' generators)`` of each solve: at most ``max_batch_size`` inputs × draws, all
    the draws of an input in one solve; a progress bar over the solves when there are several."""
    from ..progress import progress_bar

    chunks = torch.arange(len(owner)).split(max(1, int(max_batch_size) // r))
    bar = progress_bar(chunks, total=len(chunks), desc="bits/dim", unit="solve",
                       **{"delay": 1.0, "leave": False, "disable": len(chunks) < 2, **pipe.progress_bar_config})
    for sl in bar:
        yield sl, generator_rows(generator, (owner[sl, None] * r + torch.arange(r)).flatten())


def _per_image(pipe, inputs: list[_Input], owner: torch.Tensor, bpd: torch.Tensor, nfe: torch.Tensor,
               per_dim: list, path: torch.Tensor | None, times) -> BitsPerDimResult:
    """Gather the per-input results ``bpd (N, R)`` into per-image means, standard errors, maps and paths."""
    b, r = len(inputs), bpd.shape[1]
    count = torch.bincount(owner, minlength=b).double()

    def per_image(v: torch.Tensor) -> torch.Tensor:  # (n, ...) -> (b, ...)
        return torch.zeros(b, *v.shape[1:], dtype=torch.float64).index_add_(0, owner, v.double()) / \
            count.view(-1, *([1] * (v.dim() - 1)))

    repeats = per_image(bpd).T
    mean = repeats.mean(0)
    spread = per_image((bpd.mean(1) - mean[owner]) ** 2) * count / (count - 1).clamp_min(1)
    stderr = torch.where(count > 1, (spread / count).sqrt(),
                         repeats.std(0) / math.sqrt(r) if r > 1 else torch.full((b,), float("nan")))
    maps = None
    if per_dim:
        from ..data import untile

        maps = []
        for i, p in enumerate(inputs):
            mine = torch.stack([per_dim[k] for k in (owner == i).nonzero().flatten().tolist()])
            if p.index is not None:  # the tiles the sample left out are NaN
                full = torch.full((p.total, *mine.shape[1:]), float("nan"), dtype=mine.dtype)
                full[p.index] = mine
                mine = full
            maps.append(untile(mine, p.grid) if p.grid else mine[0])
    path = per_image(path.permute(1, 2, 0)).permute(2, 1, 0) if path is not None else None
    pixels = torch.tensor([math.prod(p.patches.shape[2:]) if len(pipe.data_shape) == 3 else 1 for p in inputs])
    return BitsPerDimResult(
        bpd=mean, stderr=stderr.double(), nfe=torch.zeros(b, dtype=torch.long).scatter_reduce(0, owner, nfe, "amax"),
        bpd_repeats=repeats, transforms=[p.transform for p in inputs], num_patches=count.long(),
        pixels_scored=count.long() * pixels, times=times, bpd_path=path, bits_maps=maps,
        tiled=[p.grid is not None for p in inputs], total_patches=torch.tensor([p.total for p in inputs]))
