"""The report's charts: matplotlib figures rendered to inline SVG strings.

matplotlib is already in the environment (an ultralytics dependency), needs no JavaScript
in the page, and its SVG with text kept as text (`svg.fonttype: none`) is a few KB a chart.
Each function takes small aggregated arrays and returns one `<svg>` element; with no data
it draws the empty axes with a "no data" note, so every chart on the page renders.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

WIDTH_IN = 6.4  # figure width, inches (scaled to the page's column width)
BAR_IN = 0.24  # height per bar in horizontal bar charts, inches
CLIP_QUANTILE = 0.99  # histograms put values above this quantile of theirs into the last bin...
CLIP_MIN_VALUES = 100  # ...when they have at least this many values
MIN_BAR_SLOTS = 3  # a bar chart is at least this many bars tall, so one or two bars are not slabs
LABEL_CHARS = 28  # longer bar labels are shortened in the middle
STYLE: dict[str, Any] = {"svg.fonttype": "none", "svg.hashsalt": "vidtrack", "font.size": 9, "axes.spines.top": False,
         "axes.spines.right": False, "axes.titlesize": 10, "axes.titleweight": "bold", "figure.dpi": 72}
PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5", "#9c6b4e")


def _style() -> Any:
    return plt.rc_context(STYLE)  # type: ignore[arg-type]  # matplotlib types its keys as literals


def _svg(fig: Figure, name: str) -> str:
    """The figure as an `<svg>` element sized by the page (viewBox kept), tagged for tests."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'<svg([^>]*?) width="([^"]*)pt" height="[^"]*"',
                 rf'<svg\1 class="chart" data-chart="{name}" style="max-width:min(100%,\2pt)"', svg, count=1)
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS // 2 - 1] + "…" + label[-LABEL_CHARS // 2:]


def _no_data(ax: plt.Axes) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#888")
    ax.set_xticks([])
    ax.set_yticks([])


def stacked_barh(name: str, title: str, labels: Sequence[str], parts: Sequence[str], values: np.ndarray,
                 xlabel: str) -> str:
    """One horizontal bar per label, split into `parts` (values[label, part])."""
    with _style():
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 1.3 + BAR_IN * max(len(labels), MIN_BAR_SLOTS)))
        left = np.zeros(len(labels))
        for j, part in enumerate(parts):
            ax.barh(range(len(labels)), values[:, j], left=left, height=0.6, label=part,
                    color=PALETTE[j % len(PALETTE)])
            left += values[:, j]
        if len(labels):
            ax.set_yticks(range(len(labels)), [_short(x) for x in labels])
            ax.set_ylim(max(len(labels), MIN_BAR_SLOTS) - 0.5, -0.5)  # first label on top; one bar stays thin
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        else:
            _no_data(ax)
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        return _svg(fig, name)


def barh(name: str, title: str, labels: Sequence[str], values: Sequence[float], xlabel: str) -> str:
    with _style():
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 1.0 + BAR_IN * max(len(labels), MIN_BAR_SLOTS)))
        if len(labels):
            ax.barh(range(len(labels)), values, height=0.6, color=PALETTE[0])
            ax.set_yticks(range(len(labels)), [_short(x) for x in labels])
            ax.set_ylim(max(len(labels), MIN_BAR_SLOTS) - 0.5, -0.5)  # first label on top; one bar stays thin
            ax.bar_label(ax.containers[0], fmt=_num, padding=3, fontsize=8)  # type: ignore[arg-type]
        else:
            _no_data(ax)
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        return _svg(fig, name)


def histogram(name: str, title: str, values: np.ndarray, xlabel: str, bins: int | Sequence[float] = 30,
              xlim: tuple[float, float] | None = None) -> str:
    """Distribution over videos (one value each); the median is marked. Without `xlim`, values
    above the CLIP_QUANTILE quantile are drawn in the last bin, so outliers do not squash the rest."""
    with _style():
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 2.4))
        if len(values):
            med = float(np.median(values))
            top = float(np.quantile(values, CLIP_QUANTILE))
            if xlim is None and len(values) >= CLIP_MIN_VALUES and top < values.max():
                values = np.minimum(values, top)
                xlabel += f" (above {_num(top)}: in the last bin)"
            ax.hist(values, bins=bins, range=xlim, color=PALETTE[0], edgecolor="white", linewidth=0.5)
            ax.axvline(med, color=PALETTE[2], linewidth=1.2)
            ax.text(med, 1.0, f" median {_num(med)}", transform=ax.get_xaxis_transform(), va="top", fontsize=8,
                    color=PALETTE[2])
            ax.set_ylabel("videos")
        else:
            _no_data(ax)
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        return _svg(fig, name)


def binned_lines(name: str, title: str, series: Sequence[str], counts: np.ndarray, edges: Sequence[float],
                 xlabel: str) -> str:
    """Each series' share of its total per bin (counts[series, bin]), so that classes of very
    different sizes compare; bins are [edges[i], edges[i+1]) and a last open one [edges[-1], inf)."""
    bin_labels = [f"{_num(a)}–{_num(b)}" for a, b in pairwise(edges)] + [f"≥{_num(edges[-1])}"]
    with _style():
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 2.6))
        x = np.arange(len(bin_labels))
        for i, s in enumerate(series):
            total = counts[i].sum()
            ax.plot(x, counts[i] / total if total else counts[i], marker="o", markersize=3,
                    label=f"{s} ({int(total):,})", color=PALETTE[i % len(PALETTE)])
        if len(series):
            ax.set_xticks(x, bin_labels, rotation=40, ha="right")
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
            ax.set_ylabel("share of the class's tracks")
            ax.legend(frameon=False, fontsize=8)
        else:
            _no_data(ax)
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        return _svg(fig, name)


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
