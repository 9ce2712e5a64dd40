"""Inline SVG charts for the HTML report, drawn in Python: no script, no CDN.

Every function returns one ``<svg class="chart">`` element whose data marks (bars,
points, cells) carry the class ``mark`` and a ``<title>`` (the browser's tooltip), so a
test can check that a chart drew something. Every text that reaches the markup goes
through :func:`esc`.
"""

import html
import math
from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["PALETTE", "bars", "columns", "esc", "heatmap", "lines", "reliability"]

PALETTE: Final = ("#2f6fde", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f")
_INK: Final = "#3d4451"
_GRID: Final = "#e3e6eb"
_FONT: Final = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'

Format = Callable[[float], str]


def esc(value: object) -> str:
    """``value`` as text safe inside HTML and SVG (quotes too)."""
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _svg(key: str, width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg class="chart" data-chart="{esc(key)}" viewBox="0 0 {width} {height}" '
        f'width="100%" style="max-width:{width}px" role="img" aria-label="{esc(label)}" '
        f'{_FONT} font-size="12" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(body) + "</svg>"
    )


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top``."""
    if top <= 0:
        return 1.0
    power = float(10 ** math.floor(math.log10(top)))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= top:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _legend(series: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    out = []
    for name, color in series:
        out.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" rx="2" fill="{color}"/>'
            f'<text x="{x + 14:.1f}" y="{y:.1f}" fill="{_INK}">{esc(name)}</text>'
        )
        x += 24 + 7 * len(name)
    return out


def bars(
    key: str,
    items: Sequence[tuple[str, float]],
    *,
    label: str,
    fmt: Format = _number,
    color: str = PALETTE[0],
    top: float | None = None,
) -> str:
    """Horizontal bars, one per ``(label, value)``, values written at their ends."""
    width, left, row = 640, min(200, 20 + 7 * max((len(n) for n, _ in items), default=4)), 28
    height = 16 + row * len(items)
    most = top if top is not None else max((v for _, v in items), default=0.0)
    scale = (width - left - 70) / (most or 1.0)
    body = []
    for index, (name, value) in enumerate(items):
        y = 8 + index * row
        w = max(value * scale, 0.0)
        body.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" fill="{_INK}">{esc(name)}</text>'
            f'<rect class="mark" x="{left}" y="{y + 2}" width="{max(w, 1.0):.1f}" height="18" '
            f'rx="3" fill="{color}"><title>{esc(name)}: {esc(fmt(value))}</title></rect>'
            f'<text x="{left + w + 6:.1f}" y="{y + 15}" fill="{_INK}">{esc(fmt(value))}</text>'
        )
    return _svg(key, width, height, body, label)


def _axes(
    left: float, top: float, width: float, height: float, *, most: float, fmt: Format
) -> list[str]:
    body = []
    for tick in range(5):
        value = most * tick / 4
        y = top + height - height * tick / 4
        body.append(
            f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#6b7280" '
            f'font-size="11">{esc(fmt(value))}</text>'
        )
    return body


def _x_labels(labels: Sequence[str], left: float, step: float, y: float) -> list[str]:
    longest = max((len(name) for name in labels), default=1)
    every = max(1, math.ceil((longest * 7 + 8) / step))
    return [
        f'<text x="{left + step * (i + 0.5):.1f}" y="{y:.1f}" text-anchor="middle" '
        f'fill="#6b7280" font-size="11">{esc(name)}</text>'
        for i, name in enumerate(labels)
        if i % every == 0
    ]


def columns(
    key: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    label: str,
    stacked: bool = False,
    fmt: Format = _number,
) -> str:
    """Vertical columns per category: one per series side by side, or stacked."""
    width, height, left, top, bottom = 640, 280, 64, 28, 40
    plot_w, plot_h = width - left - 16, height - top - bottom
    if stacked:
        most = max((sum(v[i] for _, v in series) for i in range(len(categories))), default=0.0)
    else:
        most = max((x for _, v in series for x in v), default=0.0)
    most = _nice(most)
    step = plot_w / max(len(categories), 1)
    body = _axes(left, top, plot_w, plot_h, most=most, fmt=fmt)
    colors = [(name, PALETTE[i % len(PALETTE)]) for i, (name, _) in enumerate(series)]
    if len(series) > 1:
        body += _legend(colors, left, 14)
    inner = step * 0.72
    for c, category in enumerate(categories):
        base: float = top + plot_h
        for s, (name, values) in enumerate(series):
            value = values[c]
            h = plot_h * value / most
            x: float
            w: float
            y: float
            if stacked:
                x, w, y = left + step * c + (step - inner) / 2, inner, base - h
                base -= h
            else:
                w = inner / len(series)
                x, y = left + step * c + (step - inner) / 2 + w * s, top + plot_h - h
            if value <= 0:
                continue
            body.append(
                f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{max(w - 1, 1):.1f}" '
                f'height="{max(h, 1):.1f}" fill="{colors[s][1]}"><title>{esc(category)}, '
                f"{esc(name)}: {esc(fmt(value))}</title></rect>"
            )
    body += _x_labels(categories, left, step, height - 16)
    return _svg(key, width, height, body, label)


def lines(
    key: str,
    xs: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    label: str,
    fmt: Format = _number,
    top_value: float | None = None,
) -> str:
    """Lines with a dot per value over the labels ``xs``; ``None`` leaves a gap."""
    width, height, left, top, bottom = 640, 260, 64, 28, 40
    plot_w, plot_h = width - left - 16, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    most = top_value if top_value is not None else _nice(max(values, default=0.0))
    step = plot_w / max(len(xs), 1)
    body = _axes(left, top, plot_w, plot_h, most=most, fmt=fmt)
    colors = [(name, PALETTE[i % len(PALETTE)]) for i, (name, _) in enumerate(series)]
    if len(series) > 1:
        body += _legend(colors, left, 14)
    for s, (name, vs) in enumerate(series):
        color = colors[s][1]
        path: list[str] = []
        dots = []
        for i, value in enumerate(vs):
            if value is None:
                path.append("")
                continue
            x = left + step * (i + 0.5)
            y = top + plot_h - plot_h * value / most
            path.append(f"{x:.1f},{y:.1f}")
            dots.append(
                f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}">'
                f"<title>{esc(xs[i])}, {esc(name)}: {esc(fmt(value))}</title></circle>"
            )
        for run in " ".join(path).split("  "):
            points = run.split()
            if len(points) > 1:
                body.append(
                    f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" '
                    'stroke-width="2"/>'
                )
        body += dots
    body += _x_labels(xs, left, step, height - 16)
    return _svg(key, width, height, body, label)


def heatmap(
    key: str,
    rows: Sequence[str],
    cols: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    label: str,
    fmt: Format = _number,
) -> str:
    """A grid of cells shaded by value from 0 to 1 (``None``: no cell)."""
    left, top, cell_w, cell_h = 84, 24, max(28.0, min(56.0, 556 / max(len(cols), 1))), 24
    width = int(left + cell_w * len(cols) + 8)
    height = int(top + cell_h * len(rows) + 8)
    body = [
        f'<text x="{left + cell_w * (i + 0.5):.1f}" y="16" text-anchor="middle" '
        f'fill="#6b7280" font-size="11">{esc(name)}</text>'
        for i, name in enumerate(cols)
    ]
    for r, name in enumerate(rows):
        y = top + r * cell_h
        body.append(
            f'<text x="{left - 6}" y="{y + 16}" text-anchor="end" fill="{_INK}" '
            f'font-size="11">{esc(name)}</text>'
        )
        for c, value in enumerate(values[r]):
            if value is None:
                continue
            x = left + c * cell_w
            shade = max(0.0, min(1.0, value))
            fill = f"rgb({int(235 - 188 * shade)},{int(241 - 130 * shade)},{int(250 - 28 * shade)})"
            ink = "#ffffff" if shade > 0.55 else _INK
            body.append(
                f'<rect class="mark" x="{x:.1f}" y="{y}" width="{cell_w - 2:.1f}" '
                f'height="{cell_h - 2}" rx="2" fill="{fill}"><title>{esc(name)}, '
                f"{esc(cols[c])}: {esc(fmt(value))}</title></rect>"
                f'<text x="{x + cell_w / 2 - 1:.1f}" y="{y + 15}" text-anchor="middle" '
                f'fill="{ink}" font-size="10">{esc(fmt(value))}</text>'
            )
    return _svg(key, width, height, body, label)


def reliability(key: str, points: Sequence[tuple[float, float, int]], *, label: str) -> str:
    """A calibration diagram: predicted probability against the share won, one dot per
    bin (sized by its deals) and the diagonal of a perfect forecast."""
    size, left, top = 300, 48, 16
    plot = size - left - 24
    body = _axes(left, top, plot, plot, most=1.0, fmt=lambda v: f"{v:.0%}")
    body.append(
        f'<line x1="{left}" y1="{top + plot}" x2="{left + plot}" y2="{top}" '
        f'stroke="#9ca3af" stroke-dasharray="4 4"/>'
    )
    most = max((n for _, _, n in points), default=1)
    for predicted, actual, deals in points:
        x = left + plot * predicted
        y = top + plot - plot * actual
        r = 4 + 8 * math.sqrt(deals / most)
        body.append(
            f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{PALETTE[0]}" '
            f'fill-opacity="0.7"><title>predicted {predicted:.0%}, won {actual:.0%}, '
            f"{deals} deals</title></circle>"
        )
    body.append(
        f'<text x="{left + plot / 2}" y="{size - 2}" text-anchor="middle" fill="#6b7280" '
        'font-size="11">stage probability</text>'
    )
    return _svg(key, size, size + 8, body, label)
