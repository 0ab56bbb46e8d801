"""Server-rendered SVG charts: lines over days, horizontal bars, 100 % stacks, dumbbells, a
day strip, reference-against-current histograms and stacked trends. Pure functions from numbers
to markup, no JavaScript and nothing fetched, so the page works offline and a browser test can
read every mark from the DOM.

Each chart is a ``<figure class="chart" data-chart=ID>`` holding a title, an HTML legend (it
wraps; SVG text does not) and an ``<svg>`` whose marks carry ``data-*`` attributes with the
numbers they draw and a ``<title>`` the browser shows on hover. With nothing to draw the figure
holds an explicit empty state (``data-empty="true"``) instead of a blank frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from html import escape

__all__ = [
    "BAD",
    "GOOD",
    "MUTED",
    "PALETTE",
    "WARN",
    "Bar",
    "Comparison",
    "Distribution",
    "Segment",
    "Series",
    "StackRow",
    "TrendPanel",
    "bar_chart",
    "day_strip",
    "distribution_chart",
    "dumbbell_chart",
    "fmt",
    "line_chart",
    "nice_ticks",
    "stacked_chart",
    "trend_chart",
]

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, readable on white.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7F6A3B", "#555555")
GOOD = "#009E73"
WARN = "#E69F00"
BAD = "#D55E00"
MUTED = "#9AA3AD"
_GRID = "#E3E7EB"
_AXIS = "#5B6570"
_WIDTH = 640


def fmt(value: float | None, unit: str = "") -> str:
    """A number as people read it: thousands separated, three significant digits."""
    if value is None or not math.isfinite(value):
        return "\u2013"  # an en dash
    magnitude = abs(value)
    if magnitude >= 1000:
        text = f"{value:,.0f}"
    elif value == int(value):
        text = f"{int(value)}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text}{unit}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (steps of 1, 2, 2.5 or 5 times 10^k)."""
    if not math.isfinite(top) or top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    steps = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(steps + 1)]


def _attrs(values: Mapping[str, object]) -> str:
    return "".join(f' {name}="{escape(str(value))}"' for name, value in values.items())


def _caption(title: str, badge: str) -> str:
    """The figure's caption; a ``badge`` (e.g. "not judged") follows the title as a pill."""
    pill = f' <span class="badge">{escape(badge)}</span>' if badge else ""
    return f"<figcaption>{escape(title)}{pill}</figcaption>"


def _opening(chart_id: str, badge: str, empty: bool = False) -> str:
    attrs = {"data-chart": chart_id}
    if empty:
        attrs["data-empty"] = "true"
    if badge:
        attrs["data-badge"] = badge
    return f'<figure class="chart"{_attrs(attrs)}>'


def _figure(
    chart_id: str, title: str, body: str, legend: str = "", note: str = "", badge: str = ""
) -> str:
    note_html = f'<p class="chart-note">{escape(note)}</p>' if note else ""
    return f"{_opening(chart_id, badge)}{_caption(title, badge)}{note_html}{legend}{body}</figure>"


def _svg(title: str, width: int, height: int, content: str) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{content}</svg>"
    )


def _empty(
    chart_id: str, title: str, message: str, height: int = 160, note: str = "", badge: str = ""
) -> str:
    body = _svg(
        title,
        _WIDTH,
        height,
        f'<rect x="1" y="1" width="{_WIDTH - 2}" height="{height - 2}" rx="8" fill="#F7F9FA" '
        f'stroke="{_GRID}" stroke-dasharray="6 4"/>'
        f'<text class="empty-message" x="{_WIDTH / 2}" y="{height / 2 + 5}" '
        f'text-anchor="middle" fill="{_AXIS}" font-size="15">{escape(message)}</text>',
    )
    note_html = f'<p class="chart-note">{escape(note)}</p>' if note else ""
    return (
        f"{_opening(chart_id, badge, empty=True)}{_caption(title, badge)}{note_html}{body}</figure>"
    )


def _legend(items: Sequence[tuple[str, str]], shape: str = "swatch") -> str:
    entries = "".join(
        f'<li><span class="{shape}" style="background:{colour}"></span>{escape(label)}</li>'
        for label, colour in items
    )
    return f'<ul class="legend">{entries}</ul>'


def _day_label(day: date) -> str:
    return f"{day:%b} {day.day}"


def _day_ticks(days: Sequence[date], x_of: Callable[[int], float], y: float) -> str:
    """At most about eight day labels along an x axis of ``days``."""
    every = max(1, math.ceil(len(days) / 8))
    return "".join(
        f'<text x="{x_of(index):.1f}" y="{y}" text-anchor="middle" class="tick">'
        f"{escape(_day_label(days[index]))}</text>"
        for index in range(0, len(days), every)
    )


# --- lines over days ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One line: a value per day (None where there is nothing to plot)."""

    name: str
    values: Sequence[float | None]
    colour: str


def line_chart(
    chart_id: str,
    title: str,
    days: Sequence[date],
    series: Sequence[Series],
    *,
    y_label: str,
    unit: str = "",
    empty_message: str,
    height: int = 260,
) -> str:
    """Lines over consecutive days, one per series, with a dot per plotted value."""
    plotted = [s for s in series if any(v is not None for v in s.values)]
    if not days or not plotted:
        return _empty(chart_id, title, empty_message)
    left, right, top, bottom = 62, 16, 14, 34
    inner_w, inner_h = _WIDTH - left - right, height - top - bottom
    highest = max(v for s in plotted for v in s.values if v is not None)
    ticks = nice_ticks(highest if highest > 0 else 1.0)
    y_top = ticks[-1]

    def x_of(index: int) -> float:
        if len(days) == 1:
            return left + inner_w / 2
        return left + inner_w * index / (len(days) - 1)

    def y_of(value: float) -> float:
        return top + inner_h * (1 - value / y_top)

    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{left}" x2="{_WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{_GRID}"/><text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" '
            f'class="tick">{escape(fmt(tick))}</text>'
        )
    parts.append(_day_ticks(days, x_of, height - 12))
    parts.append(
        f'<line x1="{left}" x2="{_WIDTH - right}" y1="{top + inner_h}" y2="{top + inner_h}" '
        f'stroke="{_AXIS}"/><text transform="translate(14 {top + inner_h / 2}) rotate(-90)" '
        f'text-anchor="middle" class="axis-label">{escape(y_label)}</text>'
    )
    for line in plotted:
        path, dots, pen_down = [], [], False
        for index, value in enumerate(line.values):
            if value is None:
                pen_down = False
                continue
            x, y = x_of(index), y_of(value)
            path.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
            pen_down = True
            tip = f"{line.name}, {days[index].isoformat()}: {fmt(value, unit)}"
            dots.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.2" fill="{line.colour}" '
                f'data-day="{days[index].isoformat()}" data-value="{value:g}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        total = sum(v for v in line.values if v is not None)
        parts.append(
            f'<g class="series"{_attrs({"data-series": line.name, "data-total": f"{total:g}"})}'
            f' data-points="{len(dots)}"><path d="{" ".join(path)}" fill="none" '
            f'stroke="{line.colour}" stroke-width="2.2" stroke-linejoin="round"/>'
            f"{''.join(dots)}</g>"
        )
    legend = _legend([(s.name, s.colour) for s in plotted])
    return _figure(chart_id, title, _svg(title, _WIDTH, height, "".join(parts)), legend)


# --- horizontal bars ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One labelled bar; ``marker`` draws a per-row tick (e.g. the allowed null rate)."""

    label: str
    value: float
    colour: str
    text: str
    tooltip: str
    marker: float | None = None
    data: Mapping[str, object] = field(default_factory=dict)


def bar_chart(
    chart_id: str,
    title: str,
    bars: Sequence[Bar],
    *,
    x_label: str,
    empty_message: str,
    reference: float | None = None,
    reference_label: str = "",
    legend: Sequence[tuple[str, str]] = (),
    note: str = "",
    badge: str = "",
) -> str:
    """Horizontal bars, one row each, optionally a vertical reference line across all rows;
    ``badge`` is a short state shown beside the title (and as ``data-badge``)."""
    if not bars:
        return _empty(chart_id, title, empty_message, note=note, badge=badge)
    label_w, right, top, row_h, bottom = 200, 78, 22, 24, 36
    inner_w = _WIDTH - label_w - right
    height = top + row_h * len(bars) + bottom
    highest = max(
        [bar.value for bar in bars]
        + [bar.marker for bar in bars if bar.marker is not None]
        + ([reference] if reference is not None else [])
    )
    ticks = nice_ticks(highest if highest > 0 else 1.0, 4)
    x_top = ticks[-1]

    def x_of(value: float) -> float:
        return label_w + inner_w * max(0.0, min(value, x_top)) / x_top

    parts = []
    axis_y = top + row_h * len(bars)
    for tick in ticks:
        x = x_of(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{axis_y}" stroke="{_GRID}"/>'
            f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" class="tick">'
            f"{escape(fmt(tick))}</text>"
        )
    parts.append(
        f'<text x="{label_w + inner_w / 2}" y="{height - 4}" text-anchor="middle" '
        f'class="axis-label">{escape(x_label)}</text>'
    )
    for index, bar in enumerate(bars):
        y = top + row_h * index
        label = bar.label if len(bar.label) <= 30 else bar.label[:29] + "…"
        width = x_of(bar.value) - label_w
        marker = ""
        if bar.marker is not None:
            mx = x_of(bar.marker)
            marker = (
                f'<line class="marker" x1="{mx:.1f}" x2="{mx:.1f}" y1="{y + 2}" '
                f'y2="{y + row_h - 2}" stroke="#1F2933" stroke-width="2"/>'
            )
        parts.append(
            f'<g class="bar"{_attrs({"data-label": bar.label, "data-value": f"{bar.value:g}"})}'
            f"{_attrs({f'data-{k}': v for k, v in bar.data.items()})}>"
            f"<title>{escape(bar.tooltip)}</title>"
            f'<text x="{label_w - 8}" y="{y + row_h / 2 + 4}" text-anchor="end" '
            f'class="row-label">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{max(width, 1.5):.1f}" '
            f'height="{row_h - 8}" rx="3" fill="{bar.colour}"/>{marker}'
            f'<text x="{label_w + width + 6:.1f}" y="{y + row_h / 2 + 4}" class="value">'
            f"{escape(bar.text)}</text></g>"
        )
    if reference is not None:
        rx = x_of(reference)
        parts.append(
            f'<line class="reference" x1="{rx:.1f}" x2="{rx:.1f}" y1="{top - 6}" y2="{axis_y}" '
            f'stroke="{BAD}" stroke-width="1.5" stroke-dasharray="5 3"/>'
            f'<text x="{rx + 4:.1f}" y="{top - 8}" class="reference-label" fill="{BAD}">'
            f"{escape(reference_label)}</text>"
        )
    body = _svg(title, _WIDTH, height, "".join(parts))
    return _figure(chart_id, title, body, _legend(legend) if legend else "", note, badge)


# --- 100 % stacks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One part of a stacked row."""

    label: str
    value: float
    colour: str


@dataclass(frozen=True)
class StackRow:
    """A row of segments shown as shares of their total."""

    label: str
    segments: Sequence[Segment]


def stacked_chart(
    chart_id: str,
    title: str,
    rows: Sequence[StackRow],
    *,
    empty_message: str,
    legend: Sequence[tuple[str, str]] = (),
) -> str:
    """One 100 % bar per row; a segment wide enough is labelled with its name and share, and a
    key under the bar names the segments too narrow to carry their own label."""
    rows = [row for row in rows if sum(s.value for s in row.segments) > 0]
    if not rows:
        return _empty(chart_id, title, empty_message)
    label_w, right, top, bar_h, key_h = 200, 78, 8, 28, 18
    inner_w = _WIDTH - label_w - right
    row_h = bar_h + key_h + 8
    height = top + row_h * len(rows)
    parts = []
    for index, row in enumerate(rows):
        y = top + row_h * index
        total = sum(s.value for s in row.segments)
        parts.append(
            f'<g class="stack"{_attrs({"data-label": row.label, "data-total": f"{total:g}"})}>'
            f'<text x="{label_w - 8}" y="{y + bar_h / 2 + 4}" text-anchor="end" '
            f'class="row-label">{escape(row.label)}</text>'
        )
        x = float(label_w)
        unnamed: list[tuple[Segment, str]] = []
        for segment in row.segments:
            width = inner_w * segment.value / total
            share = segment.value / total
            tip = f"{row.label}: {segment.label} {fmt(segment.value)} ({share:.1%})"
            # The longest label that fits (about 7 px a character at this size), else none.
            named, bare = f"{segment.label} {share:.0%}", f"{share:.0%}"
            fitting = next((t for t in (named, bare) if len(t) * 7 + 8 <= width), None)
            if fitting != named:
                # The bar already shows the share when the bare one fits.
                unnamed.append((segment, "" if fitting else f" {share:.0%}"))
            text = ""
            if fitting:
                text = (
                    f'<text x="{x + width / 2:.1f}" y="{y + bar_h / 2 + 4}" text-anchor="middle" '
                    f'class="segment-label">{escape(fitting)}</text>'
                )
            parts.append(
                f'<g class="segment"{_attrs({"data-label": segment.label})}'
                f' data-value="{segment.value:g}"><title>{escape(tip)}</title>'
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{bar_h}" '
                f'fill="{segment.colour}" stroke="#fff" stroke-width="1"/>{text}</g>'
            )
            x += width
        if unnamed:
            key = "".join(
                f'<tspan fill="{segment.colour}">\u25a0</tspan>'
                f"<tspan> {escape(segment.label)}{share}   </tspan>"
                for segment, share in unnamed
            )
            parts.append(
                f'<text x="{label_w}" y="{y + bar_h + key_h - 3}" class="key" '
                f'xml:space="preserve">{key}</text>'
            )
        parts.append(
            f'<text x="{_WIDTH - right + 6}" y="{y + bar_h / 2 + 4}" class="value">'
            f"n = {escape(fmt(total))}</text></g>"
        )
    body = _svg(title, _WIDTH, height, "".join(parts))
    return _figure(chart_id, title, body, _legend(legend) if legend else "")


# --- realised against registered ----------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One metric: registered (hollow), realised (filled) and estimated (diamond)."""

    label: str
    realised: float | None
    registered: float | None
    estimated: float | None
    lower_is_better: bool = False
    estimated_reference: float | None = None  # what the estimate is judged against


def _unit(row: Comparison) -> bool:
    """Whether every value of ``row`` lies in [0, 1]: such metrics share one 0-1 axis."""
    values = [v for v in (row.realised, row.registered, row.estimated) if v is not None]
    return all(0.0 <= v <= 1.0 for v in values)


def dumbbell_chart(
    chart_id: str,
    title: str,
    rows: Sequence[Comparison],
    *,
    empty_message: str,
    note: str = "",
    badge: str = "",
) -> str:
    """A row per metric; the realised dot is green when it is no worse than at registration,
    vermillion when it is. Metrics within 0-1 (AUC, accuracy, MAPE) share one 0-1 axis drawn
    above them; any other (MAE in money, a MAPE over 1, a negative R²) follows on its own axis,
    labelled under its row, so 62,000 never lands on a 0-1 scale."""
    rows = [r for r in rows if any(v is not None for v in (r.realised, r.registered, r.estimated))]
    if not rows:
        return _empty(chart_id, title, empty_message, height=120, note=note, badge=badge)
    unit = [row for row in rows if _unit(row)]
    own = [row for row in rows if not _unit(row)]
    label_w, right, row_h, own_h = 110, 200, 30, 50
    inner_w = _WIDTH - label_w - right
    top = 26 if unit else 8
    unit_bottom = top + row_h * len(unit)
    height = unit_bottom + (14 if unit and own else 0) + own_h * len(own) + 10
    parts = []
    if unit:
        for tick in (0, 0.25, 0.5, 0.75, 1.0):
            x = label_w + inner_w * tick
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{unit_bottom}" '
                f'stroke="{_GRID}"/><text x="{x:.1f}" y="{top - 10}" text-anchor="middle" '
                f'class="tick">{tick:g}</text>'
            )
    for index, row in enumerate(unit):
        y = top + row_h * index + row_h / 2
        parts.append(_dumbbell_row(row, y, label_w, inner_w, 0.0, 1.0))
    own_top = unit_bottom + (14 if unit and own else 0)
    for index, row in enumerate(own):
        y = own_top + own_h * index + 14
        values = [v for v in (row.realised, row.registered, row.estimated) if v is not None]
        low = min(0.0, *values)
        ticks = nice_ticks(max(*values, 0.0) - low or 1.0, 4)
        high = low + ticks[-1]
        axis = "".join(
            f'<line x1="{label_w + inner_w * t / ticks[-1]:.1f}" '
            f'x2="{label_w + inner_w * t / ticks[-1]:.1f}" y1="{y + 6}" y2="{y + 10}" '
            f'stroke="{_AXIS}"/><text x="{label_w + inner_w * t / ticks[-1]:.1f}" y="{y + 22}" '
            f'text-anchor="middle" class="tick">{escape(fmt(low + t))}</text>'
            for t in ticks
        )
        parts.append(_dumbbell_row(row, y, label_w, inner_w, low, high, axis))
    legend = (
        '<ul class="legend"><li><span class="dot hollow"></span>registered</li>'
        f'<li><span class="dot" style="background:{GOOD}"></span>realised</li>'
        f'<li><span class="dot" style="background:{BAD}"></span>realised, worse</li>'
        '<li><span class="diamond"></span>estimated (CBPE)</li></ul>'
    )
    body = _svg(title, _WIDTH, height, "".join(parts))
    return _figure(chart_id, title, body, legend, note, badge)


def _dumbbell_row(
    row: Comparison,
    y: float,
    label_w: int,
    inner_w: int,
    low: float,
    high: float,
    axis: str = "",
) -> str:
    """One metric's marks on the axis ``low``-``high`` (``axis``: its own tick marks)."""

    def x_of(value: float) -> float:
        return label_w + inner_w * (max(low, min(value, high)) - low) / (high - low)

    worse = (
        row.realised is not None
        and row.registered is not None
        and (
            row.realised > row.registered if row.lower_is_better else row.realised < row.registered
        )
    )
    colour = BAD if worse else GOOD
    marks = [
        f'<text x="{label_w - 8}" y="{y + 4}" text-anchor="end" class="row-label">'
        f"{escape(row.label)}</text>",
        f'<line x1="{label_w}" x2="{label_w + inner_w}" y1="{y}" y2="{y}" stroke="{_GRID}"/>',
        axis,
    ]
    partner = row.realised if row.realised is not None else row.estimated
    if partner is not None and row.registered is not None:
        marks.append(
            f'<line x1="{x_of(row.registered):.1f}" x2="{x_of(partner):.1f}" y1="{y}" '
            f'y2="{y}" stroke="{colour if row.realised is not None else MUTED}" '
            f'stroke-width="4" stroke-opacity="0.45"/>'
        )
    if row.registered is not None:
        marks.append(
            f'<circle class="registered" cx="{x_of(row.registered):.1f}" cy="{y}" r="6" '
            f'fill="#fff" stroke="{_AXIS}" stroke-width="2"/>'
        )
    if row.estimated is not None:
        ex = x_of(row.estimated)
        marks.append(
            f'<path class="estimated" d="M{ex:.1f},{y - 7} L{ex + 7:.1f},{y} '
            f'L{ex:.1f},{y + 7} L{ex - 7:.1f},{y} Z" fill="none" stroke="{PALETTE[0]}" '
            f'stroke-width="2"/>'
        )
    if row.realised is not None:
        marks.append(
            f'<circle class="realised" cx="{x_of(row.realised):.1f}" cy="{y}" r="6" '
            f'fill="{colour}"/>'
        )
    summary = f"{fmt(row.realised)} vs {fmt(row.registered)}"
    if row.realised is None and row.estimated is not None:
        summary = f"est. {fmt(row.estimated)} vs {fmt(row.registered)}"
        if row.estimated_reference is not None:
            # The estimate is judged against itself over the days before, not against the
            # registered figure (a test split with another mix): say both.
            summary = f"est. {fmt(row.estimated)} · before {fmt(row.estimated_reference)}"
    tip = (
        f"{row.label}: realised {fmt(row.realised)}, registered {fmt(row.registered)}, "
        f"estimated {fmt(row.estimated)}"
        + (
            f" (over the reference {fmt(row.estimated_reference)})"
            if row.estimated_reference is not None
            else ""
        )
    )
    data = {
        "data-label": row.label,
        "data-realised": "" if row.realised is None else f"{row.realised:g}",
        "data-registered": "" if row.registered is None else f"{row.registered:g}",
        "data-worse": str(worse).lower(),
        "data-axis": f"{low:g}-{high:g}",
    }
    return (
        f'<g class="metric"{_attrs(data)}><title>{escape(tip)}</title>{"".join(marks)}'
        f'<text x="{label_w + inner_w + 12}" y="{y + 4}" class="value">'
        f"{escape(summary)}</text></g>"
    )


# --- a strip of days ----------------------------------------------------------------------------


def day_strip(
    chart_id: str,
    title: str,
    days: Sequence[date],
    cells: Mapping[date, tuple[str, str, str]],
    *,
    legend: Sequence[tuple[str, str]],
    empty_message: str,
) -> str:
    """A square per day coloured by ``cells[day] = (colour, state, tooltip)``; days without a
    cell are drawn hollow, so a missing run shows as a gap rather than vanishing."""
    if not days or not cells:
        return _empty(chart_id, title, empty_message, height=110)
    left, right, top = 12, 12, 10
    gap = 3.0
    size = min(28.0, (_WIDTH - left - right) / len(days) - gap)
    height = int(top + size + 34)
    parts = []
    for index, day in enumerate(days):
        x = left + index * (size + gap)
        colour, state, tip = cells.get(day, ("#fff", "none", f"{day.isoformat()}: no run"))
        stroke = _GRID if day not in cells else colour
        parts.append(
            f'<rect class="day" x="{x:.1f}" y="{top}" width="{size:.1f}" height="{size:.1f}" '
            f'rx="3" fill="{colour}" stroke="{stroke}" stroke-width="1.5" '
            f'data-day="{day.isoformat()}" data-state="{escape(state)}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    for index in sorted({0, len(days) - 1}):
        x = left + index * (size + gap) + size / 2
        parts.append(
            f'<text x="{x:.1f}" y="{top + size + 18}" text-anchor="middle" class="tick">'
            f"{escape(_day_label(days[index]))}</text>"
        )
    body = _svg(title, _WIDTH, height, "".join(parts))
    return _figure(chart_id, title, body, _legend(legend))


# --- reference against current ------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """One feature's two samples: shares per shared bin (``edges``) or per level (``levels``),
    with each side's quantiles at ``p`` (may be empty)."""

    label: str
    reference: Sequence[float]
    current: Sequence[float]
    edges: Sequence[float] | None = None
    levels: Sequence[float] | None = None
    p: Sequence[float] = ()
    reference_quantiles: Sequence[float] = ()
    current_quantiles: Sequence[float] = ()
    drifted: bool = False
    caption: str = ""


_REFERENCE_FILL = "#8A949E"


def distribution_chart(
    chart_id: str,
    title: str,
    panels: Sequence[Distribution],
    *,
    empty_message: str,
    note: str = "",
    badge: str = "",
) -> str:
    """Small multiples, two a row: each feature's reference (grey) and current (blue, vermillion
    when drifted) shares overlaid on the same bins, and under them each side's quantile strip
    (whiskers 5th to 95th percentile, box 25th to 75th, tick at the median)."""
    if not panels:
        return _empty(chart_id, title, empty_message, height=120, note=note, badge=badge)
    columns, gap, panel_h = 2, 24, 178
    panel_w = (_WIDTH - gap * (columns - 1)) / columns
    rows = math.ceil(len(panels) / columns)
    height = rows * panel_h
    parts = [
        _distribution_panel(
            panel, (i % columns) * (panel_w + gap), (i // columns) * panel_h, panel_w
        )
        for i, panel in enumerate(panels)
    ]
    legend = _legend([("reference", _REFERENCE_FILL), ("current", PALETTE[0]),
                      ("current, drifted", BAD)])  # fmt: skip
    body = _svg(title, _WIDTH, height, "".join(parts))
    return _figure(chart_id, title, body, legend, note, badge)


def _distribution_panel(panel: Distribution, left: float, top: float, width: float) -> str:
    colour = BAD if panel.drifted else PALETTE[0]
    plot_top, plot_h, strip_h = top + 22, 78, 9
    tallest = max([*panel.reference, *panel.current, 1e-9])
    label = panel.label if len(panel.label) <= 34 else panel.label[:33] + "…"
    parts = [
        f'<text x="{left:.1f}" y="{top + 13}" class="row-label"><tspan font-weight="600">'
        f"{escape(label)}</tspan>"
        + (f'<tspan class="tick"> {escape(panel.caption)}</tspan>' if panel.caption else "")
        + "</text>",
        f'<line x1="{left:.1f}" x2="{left + width:.1f}" y1="{plot_top + plot_h}" '
        f'y2="{plot_top + plot_h}" stroke="{_AXIS}"/>',
    ]

    def y_of(share: float) -> float:
        return plot_top + plot_h * (1 - share / tallest)

    ticks: list[tuple[float, str]] = []
    if panel.edges is not None:
        low, high = panel.edges[0], panel.edges[-1]
        span = high - low or 1.0

        def x_of(value: float) -> float:
            return left + width * (min(max(value, low), high) - low) / span

        # Reference as grey bars, current as a lightly filled outline over them: where the
        # two agree the outline sits on the bars' tops, where they differ the gap shows.
        for side, shares, fill, opacity in (
            ("reference", panel.reference, _REFERENCE_FILL, 0.5),
            ("current", panel.current, colour, 0.12),
        ):
            for i, share in enumerate(shares):
                x0, x1 = x_of(panel.edges[i]), x_of(panel.edges[i + 1])
                tip = (
                    f"{panel.label} {side}: {share:.1%} in "
                    f"[{fmt(panel.edges[i])}, {fmt(panel.edges[i + 1])})"
                )
                parts.append(
                    f'<rect class="bin {side}" x="{x0 + 0.5:.1f}" y="{y_of(share):.1f}" '
                    f'width="{max(x1 - x0 - 1, 0.5):.1f}" height="{plot_h * share / tallest:.1f}" '
                    f'fill="{fill}" fill-opacity="{opacity}" data-share="{share:g}">'
                    f"<title>{escape(tip)}</title></rect>"
                )
        outline = [f"M{x_of(panel.edges[0]):.1f},{plot_top + plot_h:.1f}"]
        for i, share in enumerate(panel.current):
            y = y_of(share)
            outline.append(
                f"L{x_of(panel.edges[i]):.1f},{y:.1f} L{x_of(panel.edges[i + 1]):.1f},{y:.1f}"
            )
        outline.append(f"L{x_of(panel.edges[-1]):.1f},{plot_top + plot_h:.1f}")
        parts.append(
            f'<path class="current-outline" d="{" ".join(outline)}" fill="none" '
            f'stroke="{colour}" stroke-width="2" stroke-linejoin="round" pointer-events="none"/>'
        )
        for index, (side, quantiles, fill) in enumerate(
            (
                ("reference", panel.reference_quantiles, _REFERENCE_FILL),
                ("current", panel.current_quantiles, colour),
            )
        ):
            if len(quantiles) != 5:
                continue
            y = plot_top + plot_h + 8 + index * (strip_h + 4)
            q5, q25, q50, q75, q95 = (x_of(q) for q in quantiles)
            tip = f"{panel.label} {side}: " + ", ".join(
                f"p{round(p * 100)} {fmt(q)}" for p, q in zip(panel.p, quantiles, strict=False)
            )
            parts.append(
                f'<g class="quantiles {side}" data-median="{quantiles[2]:g}">'
                f"<title>{escape(tip)}</title>"
                f'<line x1="{q5:.1f}" x2="{q95:.1f}" y1="{y + strip_h / 2:.1f}" '
                f'y2="{y + strip_h / 2:.1f}" stroke="{fill}" stroke-width="1.5"/>'
                f'<rect x="{q25:.1f}" y="{y:.1f}" width="{max(q75 - q25, 1.5):.1f}" '
                f'height="{strip_h}" fill="{fill}" fill-opacity="0.5" stroke="{fill}"/>'
                f'<line x1="{q50:.1f}" x2="{q50:.1f}" y1="{y - 1:.1f}" y2="{y + strip_h + 1:.1f}" '
                f'stroke="#1F2933" stroke-width="2"/></g>'
            )
        ticks = [(x_of(low), fmt(low)), (x_of(high), fmt(high))]
        if panel.reference_quantiles and len(panel.reference_quantiles) == 5:
            ticks.insert(1, (x_of(panel.reference_quantiles[2]), ""))
    elif panel.levels is not None:
        slot = width / max(len(panel.levels), 1)
        bar = min(slot * 0.38, 40.0)
        for i, level in enumerate(panel.levels):
            centre = left + slot * (i + 0.5)
            for side, shares, fill, x in (
                ("reference", panel.reference, _REFERENCE_FILL, centre - bar - 1),
                ("current", panel.current, colour, centre + 1),
            ):
                share = shares[i]
                tip = f"{panel.label} {side}: {share:.1%} at {fmt(level)}"
                parts.append(
                    f'<rect class="bin {side}" x="{x:.1f}" y="{y_of(share):.1f}" '
                    f'width="{bar:.1f}" height="{plot_h * share / tallest:.1f}" fill="{fill}" '
                    f'fill-opacity="0.75" data-share="{share:g}"><title>{escape(tip)}</title>'
                    "</rect>"
                )
            ticks.append((centre, fmt(level)))
    for x, text in ticks:
        if text:
            anchor = "start" if x <= left + 1 else "end" if x >= left + width - 1 else "middle"
            parts.append(
                f'<text x="{x:.1f}" y="{top + _axis_label_y(panel):.1f}" text-anchor="{anchor}" '
                f'class="tick">{escape(text)}</text>'
            )
    data = {"data-feature": panel.label, "data-drifted": str(panel.drifted).lower(),
            "data-bins": len(panel.reference)}  # fmt: skip
    return f'<g class="distribution"{_attrs(data)}>{"".join(parts)}</g>'


def _axis_label_y(panel: Distribution) -> float:
    """Where a panel's axis labels sit, under its quantile strips when it has them."""
    return 22 + 78 + (8 + 2 * 13 + 12 if panel.edges is not None else 16)


# --- trends: several measures over days, each on its own scale --------------------------------


@dataclass(frozen=True)
class TrendPanel:
    """One measure over days (None where there is no value); ``reference`` draws its alert
    line; ``percent`` formats 0-1 values as percentages."""

    key: str
    label: str
    values: Sequence[float | None]
    colour: str
    reference: float | None = None
    percent: bool = False
    hollow: Sequence[bool] = ()


def trend_chart(
    chart_id: str,
    title: str,
    days: Sequence[date],
    panels: Sequence[TrendPanel],
    *,
    empty_message: str,
    note: str = "",
    badge: str = "",
) -> str:
    """Stacked panels over the same days, one per measure, each with its own y axis: a share,
    a ratio to a threshold and a metric (0-1 or money) never share a scale."""
    plotted = [p for p in panels if any(v is not None for v in p.values)]
    if not days or not plotted:
        return _empty(chart_id, title, empty_message, height=120, note=note, badge=badge)
    left, right, panel_h, gap, bottom = 62, 16, 70, 34, 22
    inner_w = _WIDTH - left - right
    height = len(plotted) * (panel_h + gap) + bottom

    def x_of(index: int) -> float:
        if len(days) == 1:
            return left + inner_w / 2
        return left + inner_w * index / (len(days) - 1)

    parts = []
    for number, panel in enumerate(plotted):
        top = number * (panel_h + gap) + 24
        values = [v for v in panel.values if v is not None]
        low = min(0.0, *values)
        highest = max(*values, panel.reference or 0.0)
        if panel.percent:
            highest = max(highest, 0.1)
        ticks = nice_ticks(highest - low if highest > low else 1.0, 2)
        high = low + ticks[-1]

        def y_of(value: float, top: float = top, low: float = low, high: float = high) -> float:
            return top + panel_h * (1 - (value - low) / (high - low))

        def label(value: float, percent: bool = panel.percent) -> str:
            return f"{value:.0%}" if percent else fmt(value)

        parts.append(
            f'<text x="{left}" y="{top - 12}" class="axis-label">{escape(panel.label)}</text>'
        )
        for tick in (low, (low + high) / 2, high):
            y = y_of(tick)
            parts.append(
                f'<line x1="{left}" x2="{_WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{_GRID}"/><text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" '
                f'class="tick">{escape(label(tick))}</text>'
            )
        if panel.reference is not None and panel.reference <= high:
            y = y_of(panel.reference)
            parts.append(
                f'<line class="reference" x1="{left}" x2="{_WIDTH - right}" y1="{y:.1f}" '
                f'y2="{y:.1f}" stroke="{BAD}" stroke-width="1.2" stroke-dasharray="5 3"/>'
            )
        path, dots, pen_down = [], [], False
        for index, value in enumerate(panel.values):
            if value is None:
                pen_down = False
                continue
            x, y = x_of(index), y_of(value)
            path.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
            pen_down = True
            hollow = index < len(panel.hollow) and panel.hollow[index]
            tip = f"{panel.label}, {days[index].isoformat()}: {label(value)}" + (
                " (estimated)" if hollow else ""
            )
            fill = "#fff" if hollow else panel.colour
            dots.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.4" fill="{fill}" '
                f'stroke="{panel.colour}" stroke-width="1.6" data-day="{days[index].isoformat()}" '
                f'data-value="{value:g}"><title>{escape(tip)}</title></circle>'
            )
        parts.append(
            f'<g class="panel" data-panel="{escape(panel.key)}" data-points="{len(dots)}" '
            f'data-axis="{low:g}-{high:g}"><path d="{" ".join(path)}" fill="none" '
            f'stroke="{panel.colour}" stroke-width="2" stroke-linejoin="round"/>'
            f"{''.join(dots)}</g>"
        )
    parts.append(_day_ticks(days, x_of, height - 6))
    return _figure(chart_id, title, _svg(title, _WIDTH, height, "".join(parts)), "", note, badge)
