"""The `/admin usage` chart: the month's spend per day against the budget line, the projection
to the month's end, and the top members and LoRAs by images, as one PNG.

Drawn with matplotlib's Agg canvas on a `Figure` of its own (no pyplot, no global state), so
it can run in a worker thread (`asyncio.to_thread`) while the event loop goes on. The card is
opaque and dark with light text and saturated lines, so it reads the same on Discord's dark
and light themes (a transparent PNG would take the theme's background and lose its text on
one of them).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from jobs.spend import TOP, SpendChart, ordinal

CARD = "#1f2330"
PANEL = "#262b3a"
TEXT = "#f2f4f8"
MUTED = "#b8c0d0"
GRID = "#3d4457"
SPEND = "#4da3ff"
BUDGET = "#ff6b6b"
PROJECTION = "#ffd166"
MEMBERS = "#5ad1a7"
LORAS = "#c39bff"
LABEL_MAX = 22
WIDTH, HEIGHT, DPI = 10.0, 6.4, 100  # 1000 × 640 px


def render_spend_chart(chart: SpendChart, member_names: Mapping[int, str]) -> bytes:
    """The chart as PNG bytes. CPU work: call it through `asyncio.to_thread`."""
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, facecolor=CARD)
    FigureCanvasAgg(figure)
    top = figure.add_gridspec(1, 1, left=0.1, right=0.96, top=0.82, bottom=0.46)
    bottom = figure.add_gridspec(1, 2, left=0.17, right=0.96, top=0.33, bottom=0.06, wspace=0.55)
    projection = chart.projection
    budget = f" of ${projection.budget_usd:,.2f}" if projection.budget_usd > 0 else ""
    figure.suptitle(
        _plain(f"Spend in {chart.month:%B %Y}: ${projection.spent_usd:,.2f}{budget}"),
        color=TEXT,
        fontsize=16,
        fontweight="bold",
        y=0.965,
    )
    figure.text(
        0.5, 0.895, _plain(projection.sentence()), ha="center", color=PROJECTION, fontsize=12.5
    )
    _spend(figure.add_subplot(top[0, 0]), chart)
    members = [(member_names.get(uid, f"member {uid}"), n) for uid, n in chart.top_members]
    _bars(figure.add_subplot(bottom[0, 0]), "Top members by images", members, MEMBERS)
    _bars(figure.add_subplot(bottom[0, 1]), "Top LoRAs by images", list(chart.top_loras), LORAS)
    out = io.BytesIO()
    figure.savefig(out, format="png", facecolor=CARD)
    return out.getvalue()


def _style(axes: Axes, title: str) -> None:
    axes.set_facecolor(PANEL)
    axes.set_title(title, color=TEXT, fontsize=12, loc="left", pad=8)
    axes.tick_params(colors=MUTED, labelsize=10)
    for spine in axes.spines.values():
        spine.set_color(GRID)
    axes.grid(color=GRID, linewidth=0.8, alpha=0.9)
    axes.set_axisbelow(True)


def _spend(axes: Axes, chart: SpendChart) -> None:
    _style(axes, "Spend so far this month (USD), with the budget and where this rate leads")
    projection = chart.projection
    days = [day for day, _ in chart.cumulative]
    totals = [usd for _, usd in chart.cumulative]
    axes.step(days, totals, where="post", color=SPEND, linewidth=2.5, label="spent")
    axes.fill_between(days, totals, step="post", color=SPEND, alpha=0.18)
    end = chart.days_in_month
    axes.plot(
        [chart.today, end],
        [projection.spent_usd, projection.month_end_usd],
        color=PROJECTION,
        linewidth=2,
        linestyle=(0, (5, 3)),
        label="at this rate",
    )
    top = max(projection.month_end_usd, projection.spent_usd, 0.05)
    if projection.budget_usd > 0:
        axes.axhline(projection.budget_usd, color=BUDGET, linewidth=2, label="budget")
        top = max(top, projection.budget_usd)
        out = projection.runs_out_on or projection.ran_out_on
        if out is not None:
            axes.axvline(out.day, color=BUDGET, linewidth=1.2, linestyle=":")
            axes.annotate(
                f"out on the {ordinal(out.day)}",
                (out.day, projection.budget_usd),
                xytext=(-4, 8),
                ha="right",
                textcoords="offset points",
                color=BUDGET,
                fontsize=10,
                fontweight="bold",
                bbox={"facecolor": PANEL, "edgecolor": "none", "pad": 1.5},
            )
    axes.set_xlim(1, end)
    axes.set_ylim(0, top * 1.15)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))
    places = 2 if top >= 0.5 else 3  # cents repeat on the axis of a month of cents
    axes.yaxis.set_major_locator(MaxNLocator(nbins=6))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"\\${value:,.{places}f}"))
    axes.set_xlabel(f"day of {chart.month:%B}", color=MUTED, fontsize=10)
    legend = axes.legend(loc="upper left", facecolor=CARD, edgecolor=GRID, fontsize=10)
    for text in legend.get_texts():
        text.set_color(TEXT)


def _bars(axes: Axes, title: str, rows: list[tuple[str, int]], colour: str) -> None:
    _style(axes, title)
    axes.grid(axis="y", visible=False)
    if not rows:
        axes.set_xticks([])
        axes.set_yticks([])
        axes.text(0.5, 0.5, "no images yet", ha="center", va="center", color=MUTED, fontsize=11)
        return
    # One slot per place, most at the top, so a short list keeps bars of the usual width.
    slots = [TOP - 1 - place for place in range(len(rows))]
    labels = [_plain(_cut(name)) for name, _ in rows]
    counts = [count for _, count in rows]
    bars = axes.barh(slots, counts, color=colour, height=0.6)
    axes.set_yticks(slots, labels, color=TEXT, fontsize=10)
    axes.set_ylim(-0.5, TOP - 0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    axes.set_xlim(0, max(counts) * 1.25)
    for bar, count in zip(bars, counts, strict=True):
        axes.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {count}",
            va="center",
            color=TEXT,
            fontsize=10,
        )


def _plain(text: str) -> str:
    """Text as written: a `$` pair would otherwise start matplotlib's math mode."""
    return text.replace("$", r"\$")


def _cut(name: str) -> str:
    return name if len(name) <= LABEL_MAX else name[: LABEL_MAX - 1] + "…"
