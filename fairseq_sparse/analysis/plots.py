"""Pictures of the analysis results (matplotlib Figures, no pyplot: no display, no global state).

Layers and heads are numbered from 1 in every picture, as in the paper.
"""

import numpy as np
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure

from .pattern_classes import CLASSES

CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#c7c7c7")


def _token_font(n, inches):
    """Largest font (points) that fits n labels along an axis of this length, within [2.5, 8]."""
    return max(2.5, min(8.0, 0.85 * 72.0 * inches / max(n, 1)))


def attention_grid(maps, tokens, title, show_tokens=48):
    """layers x heads grid of heatmaps of one example; token strings on the outer axes."""
    maps = np.asarray(maps)
    layers, heads, n, _ = maps.shape
    cell = 1.25
    fig = Figure(figsize=(heads * cell + 1.0, layers * cell + 0.8))
    axes = fig.subplots(layers, heads, squeeze=False)
    labelled = n <= show_tokens
    font = _token_font(n, cell)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            ax.imshow(
                maps[layer, head],
                cmap="viridis",
                vmin=0.0,
                vmax=max(float(maps[layer, head].max()), 1e-9),
                interpolation="nearest",
                aspect="equal",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"head {head + 1}", fontsize=7)
            if head == 0:
                if labelled:
                    ax.set_yticks(range(n))
                    ax.set_yticklabels(tokens, fontsize=font)
                ax.set_ylabel(f"layer {layer + 1}", fontsize=7)
            if layer == layers - 1 and labelled:
                ax.set_xticks(range(n))
                ax.set_xticklabels(tokens, fontsize=font, rotation=90)
    fig.suptitle(title, fontsize=9)
    return fig


def single_map(attention, tokens, title, show_tokens=64):
    attention = np.asarray(attention)
    n = attention.shape[-1]
    fig = Figure(figsize=(3.2, 3.2) if n > show_tokens else (4.2, 4.2))
    ax = fig.subplots()
    ax.imshow(attention, cmap="viridis", vmin=0.0, vmax=max(float(attention.max()), 1e-9), interpolation="nearest")
    if tokens is not None and n <= show_tokens:
        font = _token_font(n, 3.2)
        ax.set_xticks(range(n))
        ax.set_xticklabels(tokens, fontsize=font, rotation=90)
        ax.set_yticks(range(n))
        ax.set_yticklabels(tokens, fontsize=font)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    return fig


def contact_sheet(images, captions, columns=5):
    """Many maps (each scaled to its own maximum) with their ids, for labelling by eye."""
    rows = int(np.ceil(len(images) / columns))
    fig = Figure(figsize=(columns * 2.3, rows * 2.45))
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(images):
            ax.imshow(images[i], cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(captions[i], fontsize=7)
        else:
            ax.axis("off")
    return fig


def head_matrix(matrix, title, label, diverging=False, fmt="{:.2f}", vmin=None, vmax=None, cmap=None, marks=None):
    """layers x heads heatmap with the value written in each cell (followed by * where `marks` is True)."""
    m = np.asarray(matrix, dtype=float)
    layers, heads = m.shape
    fig = Figure(figsize=(max(4.0, 0.55 * heads + 1.8), max(2.5, 0.45 * layers + 1.2)))
    ax = fig.subplots()
    if diverging:
        bound = max(float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 0.0, 1e-6)
        im = ax.imshow(m, cmap=cmap or "RdBu", norm=TwoSlopeNorm(0.0, -bound, bound), aspect="auto")
    else:
        im = ax.imshow(m, cmap=cmap or "viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(heads))
    ax.set_xticklabels(range(1, heads + 1), fontsize=7)
    ax.set_yticks(range(layers))
    ax.set_yticklabels(range(1, layers + 1), fontsize=7)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if heads <= 16 and layers <= 24:
        for i in range(layers):
            for j in range(heads):
                if np.isfinite(m[i, j]):
                    star = "*" if marks is not None and marks[i][j] else ""
                    ax.text(
                        j,
                        i,
                        fmt.format(m[i, j]) + star,
                        ha="center",
                        va="center",
                        fontsize=5.5,
                        color="black",
                        bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.45),
                    )
    fig.colorbar(im, ax=ax, label=label, shrink=0.85)
    ax.set_title(title, fontsize=9)
    return fig


def curves(title, xlabel, ylabel, series, reference=None):
    """series: [(label, xs, ys, yerr or None)]; reference: a horizontal line (e.g. the intact score)."""
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.subplots()
    for label, xs, ys, err in series:
        if err is None:
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        else:
            ax.errorbar(xs, ys, yerr=err, marker="o", markersize=3, capsize=3, label=label)
    if reference is not None:
        ax.axhline(reference[1], color="gray", linestyle="--", linewidth=1, label=reference[0])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def class_shares(per_layer, overall, title):
    """Stacked bars: share of each pattern class per layer and over all layers."""
    per_layer, overall = np.asarray(per_layer), np.asarray(overall)
    rows = np.vstack([per_layer, overall[None]])
    names = [str(i + 1) for i in range(len(per_layer))] + ["all"]
    fig = Figure(figsize=(max(4.5, 0.5 * len(names) + 2.5), 3.4))
    ax = fig.subplots()
    bottom = np.zeros(len(names))
    for c, cls in enumerate(CLASSES):
        ax.bar(names, 100 * rows[:, c], bottom=bottom, color=CLASS_COLORS[c], label=cls)
        bottom += 100 * rows[:, c]
    ax.set_xlabel("layer")
    ax.set_ylabel("% of maps")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig


def class_grid(majority, title):
    """Each head's majority class as a coloured cell."""
    m = np.asarray(majority)
    layers, heads = m.shape
    fig = Figure(figsize=(max(4.0, 0.45 * heads + 3.0), max(2.4, 0.4 * layers + 1.0)))
    ax = fig.subplots()
    ax.imshow(m, cmap=ListedColormap(CLASS_COLORS), vmin=-0.5, vmax=len(CLASSES) - 0.5, aspect="auto")
    ax.set_xticks(range(heads))
    ax.set_xticklabels(range(1, heads + 1), fontsize=7)
    ax.set_yticks(range(layers))
    ax.set_yticklabels(range(1, layers + 1), fontsize=7)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    for c, cls in enumerate(CLASSES):
        ax.bar([0], [0], color=CLASS_COLORS[c], label=cls)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_title(title, fontsize=9)
    return fig


def stacked_heads(parts, title, ylabel):
    """parts: {name: (heads,) values} stacked per head (e.g. the last layer's [CLS] row by key type)."""
    names = list(parts)
    heads = len(next(iter(parts.values())))
    fig = Figure(figsize=(max(4.5, 0.4 * heads + 2.5), 3.2))
    ax = fig.subplots()
    bottom = np.zeros(heads)
    xs = np.arange(1, heads + 1)
    for i, name in enumerate(names):
        values = np.asarray(parts[name], dtype=float)
        ax.bar(xs, values, bottom=bottom, label=name, color=f"C{i}")
        bottom += values
    ax.set_xticks(xs)
    ax.set_xlabel("head")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return fig


def mask_grid(keep, densities):
    """A frozen/learned keep mask (layers, heads, n, n) as a grid of black-and-white squares. Layers
    and heads are numbered from 0 here, as the mask file's indices (and mask errors) count them."""
    layers, heads, n = keep.shape[0], keep.shape[1], keep.shape[-1]
    fig = Figure(figsize=(1.7 * heads + 0.4, 1.9 * layers + 0.4))
    axes = fig.subplots(layers, heads, squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            ax.imshow(np.asarray(keep[layer, head]), cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
            title = f"H{head} d={densities['density_per_head'][layer][head]:.2f}"
            ax.set_title(title if layers == 1 else f"L{layer} {title}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"kept keys (black), {n} x {n}, density {densities['density']:.3f}", fontsize=9)
    return fig
