"""Charts as inline SVG, drawn on the server (no script, so the CSP stays strict)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#3366aa", "#cc6633", "#339966", "#aa3377", "#777777", "#ccaa22")


def stacked_bars(days: Sequence[str], series: Mapping[str, Sequence[int]], *,
                 title: str, width: int = 720, height: int = 200) -> str:
    """Bars per day stacked by series, with a legend; ``title`` is the accessible name."""
    n = max(len(days), 1)
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    top = max(totals, default=0) or 1
    plot_h = height - 40
    bar_w = max((width - 40) / n, 1.0)
    parts = [f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
             f'width="100%" class="chart"><title>{escape(title)}</title>']
    for i, day in enumerate(days):
        y = float(plot_h)
        for k, (name, values) in enumerate(series.items()):
            v = values[i]
            if not v:
                continue
            h = v / top * (plot_h - 10)
            y -= h
            parts.append(f'<rect x="{30 + i * bar_w:.1f}" y="{y:.1f}" width="{bar_w * 0.8:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[k % len(PALETTE)]}">'
                         f'<title>{escape(day)} {escape(name)}: {v}</title></rect>')
    parts.append(f'<text x="0" y="12" font-size="11">{top}</text>')
    if days:
        parts.append(f'<text x="30" y="{plot_h + 14}" font-size="11">{escape(days[0])}</text>')
        parts.append(f'<text x="{width - 90}" y="{plot_h + 14}" font-size="11">'
                     f'{escape(days[-1])}</text>')
    for k, name in enumerate(series):
        x = 30 + k * 150
        parts.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" '
                     f'fill="{PALETTE[k % len(PALETTE)]}"/><text x="{x + 14}" y="{height - 5}" '
                     f'font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def hbars(rows: Sequence[tuple[str, int]], *, title: str, width: int = 640) -> str:
    """Horizontal bars, one per (label, value)."""
    top = max((v for _, v in rows), default=0) or 1
    height = 22 * len(rows) + 8
    parts = [f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
             f'width="100%" class="chart"><title>{escape(title)}</title>']
    for i, (label, v) in enumerate(rows):
        w = v / top * (width - 330)
        parts.append(f'<text x="0" y="{i * 22 + 16}" font-size="12">{escape(label)}</text>'
                     f'<rect x="270" y="{i * 22 + 4}" width="{w:.1f}" height="16" '
                     f'fill="{PALETTE[0]}"/><text x="{165 + w:.1f}" y="{i * 22 + 16}" '
                     f'font-size="12">{v}</text>')
    parts.append("</svg>")
    return "".join(parts)
