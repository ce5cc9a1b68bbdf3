"""Matplotlib pictures of 2-D energy models and of what samplers do on them.

Five functions, each drawing on a matplotlib ``Axes`` (a new figure when ``ax`` is None) and
returning it, so they compose::

    ax = plot_energy_landscape(model, x_range=(-3, 3), y_range=(-3, 3))
    plot_samples(samples, ax=ax)                      # [N, 2] final states
    plot_trajectories(trajectory, ax=ax)              # [n_chains, n_steps, 2], return_trajectory=True
    plot_diagnostics(diagnostics)                     # energy / acceptance rate against step

- :func:`energy_grid` evaluates ``E`` on a regular grid, in one batched, gradient-free call
  (not point by point), and returns numpy arrays ``X, Y, Z`` of shape ``[resolution, resolution]``.
- :func:`plot_energy_landscape` draws ``Z`` as filled contours, contour lines or a heat map.
  Energies often span orders of magnitude (a double well grows like ``x^4``), which would leave
  all the structure in the lowest colour band; colours therefore stop at a high quantile of the
  grid's energies (``clip_quantile``), or show ``log(1 + E - min E)`` with ``log_scale=True``.
- :func:`plot_samples` and :func:`plot_trajectories` draw over an existing landscape or, given
  ``model=``, draw the landscape first on a box that fits the points.
- :func:`plot_diagnostics` reads the sampler diagnostics in either form the seeds use: a dict
  (``"energy"``, ``"acceptance_rate"``, ... each ``[n_steps]`` or ``[n_steps, n_chains]``) or the
  tensor ``[n_steps, k, n_chains, dim]`` with the energy in slot 2 (and acceptance in slot 3
  when present).

Models are called as ``model(x)`` with ``x`` of shape ``[B, 2]``, returning ``[B]`` energies:
any :class:`torchebm.core.BaseModel` or plain callable that does so. matplotlib is imported
when a function is called, so ``import torchebm.utils`` does not need it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = [
    "energy_grid",
    "plot_energy_landscape",
    "plot_samples",
    "plot_trajectories",
    "plot_diagnostics",
]

Range = Tuple[float, float]
ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]

# Drawn over a viridis-like map (dark = low energy, where the samples are), light colours read best.
_SAMPLE_COLOR = "#ffffff"
_SAMPLE_EDGE = "#202020"


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "torchebm.utils.visualization needs matplotlib: pip install 'torchebm-fused[viz]'"
        ) from exc
    return plt


def _axes(ax, figsize=(6.0, 5.0)):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def _numpy(a: ArrayLike) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", torch.float64).numpy()
    return np.asarray(a, dtype=np.float64)


def _check_range(name: str, r: Range) -> Tuple[float, float]:
    try:
        lo, hi = float(r[0]), float(r[1])
    except (TypeError, IndexError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {r!r}") from None
    if not lo < hi:
        raise ValueError(f"{name} must satisfy low < high, got {r!r}")
    return lo, hi


def _model_device_dtype(model) -> Tuple[torch.device, torch.dtype]:
    if isinstance(model, torch.nn.Module):
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                return t.device, t.dtype
        dtype = getattr(model, "dtype", None)
        device = getattr(model, "device", None)
        if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            return torch.device(device) if device is not None else torch.device("cpu"), dtype
    return torch.device("cpu"), torch.float32


def energy_grid(
    model: Callable[[torch.Tensor], torch.Tensor],
    x_range: Range = (-3.0, 3.0),
    y_range: Range = (-3.0, 3.0),
    resolution: int = 100,
    *,
    batch_size: int = 65536,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energy of a 2-D model on a regular grid.

    Args:
        model: ``x [B, 2] -> E(x) [B]``.
        x_range, y_range: the box, ``(low, high)`` on each axis.
        resolution: grid points per axis (>= 2).
        batch_size: largest batch passed to the model at once.

    Returns:
        ``X, Y, Z``: float64 arrays ``[resolution, resolution]`` (``np.meshgrid`` layout: rows
        follow y, columns follow x); non-finite energies become NaN (left blank by contour plots).
    """
    x_lo, x_hi = _check_range("x_range", x_range)
    y_lo, y_hi = _check_range("y_range", y_range)
    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an int >= 2, got {resolution!r}")
    xs = np.linspace(x_lo, x_hi, resolution)
    ys = np.linspace(y_lo, y_hi, resolution)
    X, Y = np.meshgrid(xs, ys)
    device, dtype = _model_device_dtype(model)
    points = torch.as_tensor(np.stack([X.ravel(), Y.ravel()], axis=1), dtype=dtype, device=device)
    energies = []
    with torch.no_grad():
        for chunk in torch.split(points, batch_size):
            e = model(chunk)
            e = torch.as_tensor(e)
            if e.shape != (chunk.shape[0],):
                e = e.reshape(-1)
                if e.shape[0] != chunk.shape[0]:
                    raise ValueError(
                        f"model must return one energy per point, shape [{chunk.shape[0]}], "
                        f"got {tuple(e.shape)}"
                    )
            energies.append(e.detach().to("cpu", torch.float64))
    Z = torch.cat(energies).numpy().reshape(X.shape)
    Z = np.where(np.isfinite(Z), Z, np.nan)
    return X, Y, Z


def _color_levels(Z: np.ndarray, levels: Union[int, Sequence[float]], clip_quantile: Optional[float]):
    finite = Z[np.isfinite(Z)]
    if finite.size == 0:
        raise ValueError("the model's energy is not finite anywhere on the grid")
    if not isinstance(levels, int):
        return np.asarray(levels, dtype=np.float64), False
    lo = float(finite.min())
    hi = float(np.quantile(finite, clip_quantile)) if clip_quantile is not None else float(finite.max())
    if not hi > lo:
        hi = lo + 1.0
    clipped = clip_quantile is not None and hi < float(finite.max())
    from matplotlib.ticker import MaxNLocator

    # Round level values (0, 0.5, 1, ...) so that the colour bar is labelled with round numbers.
    lv = MaxNLocator(nbins=levels).tick_values(lo, hi)  # spans [lo, hi], maybe a little more
    return lv, clipped and lv[-1] < float(finite.max())


def plot_energy_landscape(
    model: Callable[[torch.Tensor], torch.Tensor],
    x_range: Range = (-3.0, 3.0),
    y_range: Range = (-3.0, 3.0),
    resolution: int = 100,
    *,
    ax=None,
    kind: str = "contourf",
    levels: Union[int, Sequence[float]] = 20,
    cmap: str = "viridis",
    log_scale: bool = False,
    clip_quantile: Optional[float] = 0.95,
    colorbar: bool = True,
    contour_lines: bool = True,
    title: Optional[str] = None,
):
    """Draw the energy of a 2-D model over a box.

    Args:
        model: ``x [B, 2] -> E(x) [B]``.
        x_range, y_range, resolution: the grid (see :func:`energy_grid`).
        ax: axes to draw on; a new figure when None.
        kind: ``"contourf"`` (filled contours), ``"contour"`` (lines only) or ``"heatmap"``.
        levels: number of colour levels, or explicit level values.
        cmap: matplotlib colormap name.
        log_scale: colour by ``log(1 + E - min E)`` instead of ``E``.
        clip_quantile: colours span ``[min E, quantile(E, clip_quantile)]`` (higher energies
            take the top colour); None spans the full range.
        colorbar: add a colour bar labelled "energy" (or "log(1 + E - min E)").
        contour_lines: with ``kind="contourf"``, overlay thin contour lines.
        title: axes title.

    Returns:
        The axes.
    """
    if kind not in ("contourf", "contour", "heatmap"):
        raise ValueError(f"kind must be 'contourf', 'contour' or 'heatmap', got {kind!r}")
    if clip_quantile is not None and not 0.0 < clip_quantile <= 1.0:
        raise ValueError(f"clip_quantile must be in (0, 1] or None, got {clip_quantile!r}")
    ax = _axes(ax)
    X, Y, Z = energy_grid(model, x_range, y_range, resolution)
    label = "energy"
    if log_scale:
        Z = np.log1p(Z - np.nanmin(Z))
        label = "log(1 + E - min E)"
    lv, clipped = _color_levels(Z, levels, clip_quantile)
    if kind == "heatmap":
        Zc = np.clip(Z, lv[0], lv[-1])
        mappable = ax.imshow(
            Zc,
            origin="lower",
            extent=(X[0, 0], X[0, -1], Y[0, 0], Y[-1, 0]),
            aspect="auto",
            cmap=cmap,
            vmin=lv[0],
            vmax=lv[-1],
            interpolation="bilinear",
        )
    elif kind == "contour":
        mappable = ax.contour(X, Y, Z, levels=lv, cmap=cmap, linewidths=0.8)
    else:
        mappable = ax.contourf(X, Y, Z, levels=lv, cmap=cmap, extend="max" if clipped else "neither")
        if contour_lines:
            ax.contour(X, Y, Z, levels=lv[:: max(1, len(lv) // 10)], colors="k", linewidths=0.3, alpha=0.4)
    if colorbar:
        ax.figure.colorbar(mappable, ax=ax, label=label, fraction=0.046, pad=0.04)
    ax.set_xlim(X[0, 0], X[0, -1])
    ax.set_ylim(Y[0, 0], Y[-1, 0])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal", adjustable="box")
    if title:
        ax.set_title(title)
    return ax


def _box_around(points: np.ndarray, pad: float = 0.15) -> Tuple[Range, Range]:
    finite = points[np.all(np.isfinite(points), axis=1)]
    if finite.size == 0:
        return (-3.0, 3.0), (-3.0, 3.0)
    lo = np.quantile(finite, 0.005, axis=0)
    hi = np.quantile(finite, 0.995, axis=0)
    span = np.maximum(hi - lo, 1e-3)
    lo, hi = lo - pad * span, hi + pad * span
    # A square box keeps the landscape undistorted.
    half = 0.5 * float(np.max(hi - lo))
    mid = 0.5 * (lo + hi)
    return (mid[0] - half, mid[0] + half), (mid[1] - half, mid[1] + half)


def _as_points(samples: ArrayLike, name: str) -> np.ndarray:
    pts = _numpy(samples)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{name} must have shape [N, 2], got {tuple(pts.shape)}")
    return pts


def plot_samples(
    samples: ArrayLike,
    model: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    *,
    ax=None,
    x_range: Optional[Range] = None,
    y_range: Optional[Range] = None,
    resolution: int = 100,
    s: float = 6.0,
    alpha: float = 0.6,
    color: str = _SAMPLE_COLOR,
    label: Optional[str] = None,
    title: Optional[str] = None,
    **landscape_kwargs: Any,
):
    """Scatter 2-D samples ``[N, 2]``, over the model's energy when ``model`` is given.

    The box defaults to one that fits the samples (central 99%, padded, square). Extra keyword
    arguments go to :func:`plot_energy_landscape`.

    Returns:
        The axes.
    """
    pts = _as_points(samples, "samples")
    if model is not None:
        bx, by = _box_around(pts)
        x_range = x_range or bx
        y_range = y_range or by
        ax = plot_energy_landscape(model, x_range, y_range, resolution, ax=ax, **landscape_kwargs)
    else:
        ax = _axes(ax)
        if x_range:
            ax.set_xlim(*x_range)
        if y_range:
            ax.set_ylim(*y_range)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha, c=color, edgecolors=_SAMPLE_EDGE,
               linewidths=0.2, label=label)
    if title:
        ax.set_title(title)
    if label:
        ax.legend(loc="upper right", fontsize="small")
    return ax


def plot_trajectories(
    trajectory: ArrayLike,
    model: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    *,
    ax=None,
    max_chains: int = 8,
    x_range: Optional[Range] = None,
    y_range: Optional[Range] = None,
    resolution: int = 100,
    linewidth: float = 1.0,
    alpha: float = 0.85,
    mark_ends: bool = True,
    title: Optional[str] = None,
    **landscape_kwargs: Any,
):
    """Draw chain paths ``[n_chains, n_steps, 2]`` (or one chain ``[n_steps, 2]``).

    This is the layout ``sampler.sample(..., return_trajectory=True)`` returns. At most
    ``max_chains`` chains are drawn (the first ones), each in its own colour, with a circle at
    its first recorded state and a star at its last. With ``model`` the energy is drawn first,
    on a box that fits the drawn paths unless ``x_range``/``y_range`` are given.

    Returns:
        The axes.
    """
    traj = _numpy(trajectory)
    if traj.ndim == 2:
        traj = traj[None]
    if traj.ndim != 3 or traj.shape[2] != 2:
        raise ValueError(
            f"trajectory must have shape [n_chains, n_steps, 2] or [n_steps, 2], got {tuple(traj.shape)}"
        )
    if max_chains < 1:
        raise ValueError(f"max_chains must be >= 1, got {max_chains}")
    traj = traj[:max_chains]
    if model is not None:
        bx, by = _box_around(traj.reshape(-1, 2), pad=0.25)
        ax = plot_energy_landscape(
            model, x_range or bx, y_range or by, resolution, ax=ax, **landscape_kwargs
        )
    else:
        ax = _axes(ax)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    colors = _pyplot().get_cmap("tab10")
    for k, path in enumerate(traj):
        c = colors(k % 10)
        ax.plot(path[:, 0], path[:, 1], "-", color=c, linewidth=linewidth, alpha=alpha)
        if mark_ends:
            ax.plot(path[0, 0], path[0, 1], "o", color=c, markeredgecolor="k", markersize=5)
            ax.plot(path[-1, 0], path[-1, 1], "*", color=c, markeredgecolor="k", markersize=10)
    if mark_ends:
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], marker="o", linestyle="", color="w", markeredgecolor="k", label="start"),
            Line2D([], [], marker="*", linestyle="", color="w", markeredgecolor="k", markersize=10, label="end"),
        ]
        ax.legend(handles=handles, loc="upper right", fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def _series(value: Any) -> np.ndarray:
    """A per-step curve from a diagnostics entry: [n_steps] or averaged over the rest."""
    a = _numpy(value)
    if a.ndim == 0:
        return a.reshape(1)
    if a.ndim > 1:
        a = np.nanmean(a.reshape(a.shape[0], -1), axis=1)
    return a


def _diagnostic_series(diagnostics: Any) -> dict:
    if isinstance(diagnostics, Mapping):
        return {k: _series(v) for k, v in diagnostics.items() if k in ("energy", "acceptance_rate")}
    if hasattr(diagnostics, "keys") and hasattr(diagnostics, "__getitem__"):  # dict-like object
        return {k: _series(diagnostics[k]) for k in diagnostics.keys() if k in ("energy", "acceptance_rate")}
    a = _numpy(diagnostics)
    if a.ndim == 1:  # a bare energy trace
        return {"energy": a}
    if a.ndim >= 2 and a.shape[1] >= 3:  # [n_steps, k, (n_chains,) (dim)]: mean, var, energy, (accept)
        out = {"energy": _series(a[:, 2])}
        if a.shape[1] >= 4:
            out["acceptance_rate"] = _series(a[:, 3])
        return out
    raise ValueError(
        "diagnostics must be a dict with 'energy'/'acceptance_rate', an energy trace [n_steps], "
        f"or a tensor [n_steps, k>=3, ...]; got shape {tuple(a.shape)}"
    )


def _running_mean(a: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or a.size < window:
        return a
    kernel = np.ones(window) / window
    return np.convolve(a, kernel, mode="valid")


def plot_diagnostics(
    diagnostics: Any,
    *,
    axes=None,
    smooth: Optional[int] = None,
    title: Optional[str] = None,
):
    """Energy (and acceptance rate, when recorded) against sampler step.

    Args:
        diagnostics: what ``sample(..., return_diagnostics=True)`` returns (see the module
            docstring for the accepted forms), or a dict of such entries.
        axes: a sequence of axes, one per panel; a new figure when None.
        smooth: also draw a running mean over this many steps (default: ~2% of the steps).
        title: figure title.

    Returns:
        The figure.
    """
    series = _diagnostic_series(diagnostics)
    if not series:
        raise ValueError("diagnostics hold neither 'energy' nor 'acceptance_rate'")
    plt = _pyplot()
    names = [k for k in ("energy", "acceptance_rate") if k in series]
    if axes is None:
        fig, axes = plt.subplots(1, len(names), figsize=(5.0 * len(names), 3.4), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(np.atleast_1d(axes))
        if len(axes) < len(names):
            raise ValueError(f"need {len(names)} axes for {names}, got {len(axes)}")
        fig = axes[0].figure
    for ax, name in zip(axes, names):
        y = series[name]
        steps = np.arange(1, y.size + 1)
        window = smooth if smooth is not None else max(1, y.size // 50)
        ax.plot(steps, y, color="#4c72b0", linewidth=0.8, alpha=0.5 if window > 1 else 1.0,
                label="per step")
        if window > 1 and y.size >= window:
            ax.plot(steps[window - 1:], _running_mean(y, window), color="#c44e52", linewidth=1.5,
                    label=f"running mean ({window})")
            ax.legend(fontsize="small")
        ax.set_xlabel("step")
        if name == "energy":
            ax.set_ylabel("mean energy")
            ax.set_title("energy")
        else:
            ax.set_ylabel("acceptance rate")
            ax.set_ylim(-0.02, 1.02)
            mean = float(np.nanmean(y)) if y.size else math.nan
            ax.set_title(f"acceptance rate (mean {mean:.2f})")
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
