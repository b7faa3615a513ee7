"""Charts as inline SVG strings, written by hand: no plotting library, no script, no font files.

In: numbers and labels (labels may be crawled text: every string is escaped here). Out: an
`<svg>` element to paste into HTML; hovering a bar shows its exact value (an SVG `<title>`).
Three shapes cover the report: horizontal stacked bars (`hbars`: funnel, drop reasons,
languages, time), a histogram with threshold lines (`histogram`: scores, lengths) and vertical
stacked columns (`columns`: tokens per shard, cluster sizes). A chart is 1-6 kB.
"""

from __future__ import annotations

import html
import math

from tokenmill.manifests.docsets import clean

FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:11px"
KEPT, DROPPED, OTHER, GREY = "#4c78a8", "#e45756", "#f2a93b", "#9aa5b1"
PALETTE = [KEPT, DROPPED, OTHER, "#54a24b", "#b279a2", "#72b7b2", "#ff9da6", "#9d755d", GREY]


def esc(s) -> str:
    """Text for HTML: control codes and bidi overrides made visible (`docsets.clean`), then escaped."""
    return html.escape(clean(str(s)), quote=True)


def num(x, digits: int = 3) -> str:
    """12,345 for counts; 3 significant digits otherwise (0.12, 4.84, 1.2e+05)."""
    if x is None:
        return "-"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.2g}"
    return f"{x:.{digits}g}"


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}" style="{FONT}">'
            + "".join(body) + "</svg>")


def _clip(label: str, n: int) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def legend(names: list[str], colors: list[str]) -> str:
    """An HTML legend line (kept out of the SVG so it wraps)."""
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{esc(n)}</span>' for n, c in zip(names, colors)) + "</div>"


def hbars(rows: list[dict], label: str, width: int = 760, label_w: int = 190, bar_h: int = 18,
          colors: list[str] = PALETTE, value=num, note=None, text_w: int = 230) -> str:
    """Rows: {"label", "segments": [(series name, value), ...], "text": label at the bar's end}."""
    total = max([sum(v for _, v in r["segments"]) for r in rows] + [1e-12])
    plot_w = width - label_w - text_w
    body, y = [], 4
    for r in rows:
        body.append(f'<text x="{label_w - 6}" y="{y + bar_h * 0.7:.1f}" text-anchor="end">'
                    f'<title>{esc(r["label"])}</title>{esc(_clip(str(r["label"]), 30))}</text>')
        x = float(label_w)
        for i, (name, v) in enumerate(r["segments"]):
            w = plot_w * v / total
            if w > 0:
                body.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 0.8):.1f}" height="{bar_h - 4}" '
                            f'fill="{colors[i % len(colors)]}"><title>{esc(r["label"])}: {esc(name)} '
                            f'{esc(value(v))}</title></rect>')
            x += w
        text = r.get("text", value(sum(v for _, v in r["segments"])))
        body.append(f'<text x="{x + 4:.1f}" y="{y + bar_h * 0.7:.1f}" fill="#333">{esc(text)}</text>')
        y += bar_h
    if note:
        body.append(f'<text x="{label_w}" y="{y + 12}" fill="#666">{esc(note)}</text>')
        y += 16
    return _svg(width, y + 4, body, label)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def histogram(edges: list[float], series: list[tuple[str, list[int]]], label: str,
              thresholds: list[tuple[float, str]] = (), colors: list[str] = PALETTE, width: int = 300,
              height: int = 170, x_label: str = "", overflow: bool = False, log_x: bool = False) -> str:
    """Stacked counts per bin (`edges` has one more entry than each count list). Thresholds are
    vertical red lines labelled with their rule; one outside the axis is named at the edge.
    `overflow`: the last bin also holds every value above the axis. `log_x`: positive edges on
    a logarithmic axis (lengths)."""
    left, right, top, bottom = 38, 10, 16, 30
    pw, ph = width - left - right, height - top - bottom
    lo, hi = edges[0], edges[-1]
    f = math.log10 if log_x else (lambda v: v)
    span = (f(hi) - f(lo)) or 1.0
    sums = [sum(c[i] for _, c in series) for i in range(len(edges) - 1)]
    ymax = max(sums + [1])
    sx = lambda v: left + pw * (f(v) - f(lo)) / span  # noqa: E731
    sy = lambda c: top + ph - ph * c / ymax  # noqa: E731
    body = [f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#888"/>']
    for t in _ticks(0, ymax, 3):
        body.append(f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" fill="#666">{num(t)}</text>'
                    f'<line x1="{left}" y1="{sy(t):.1f}" x2="{left + pw}" y2="{sy(t):.1f}" stroke="#eee"/>')
    for i in range(len(edges) - 1):
        x0, x1 = sx(edges[i]), sx(edges[i + 1])
        base = 0
        for k, (name, counts) in enumerate(series):
            c = counts[i]
            if c:
                more = "+" if overflow and i == len(edges) - 2 else ""
                body.append(f'<rect x="{x0 + 0.5:.1f}" y="{sy(base + c):.1f}" width="{max(x1 - x0 - 1, 0.8):.1f}" '
                            f'height="{sy(base) - sy(base + c):.1f}" fill="{colors[k % len(colors)]}">'
                            f'<title>{esc(name)}: {num(c)} in [{num(edges[i])}, {num(edges[i + 1])}){more}</title></rect>')
            base += c
    xt = [10.0 ** k for k in range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1)] if log_x else _ticks(lo, hi, 4)
    for t in xt:
        body.append(f'<text x="{sx(t):.1f}" y="{top + ph + 13}" text-anchor="middle" fill="#666">{num(t)}</text>')
    if x_label:
        body.append(f'<text x="{left + pw / 2}" y="{height - 3}" text-anchor="middle" fill="#444">{esc(x_label)}</text>')
    for j, (x, text) in enumerate(thresholds):
        ty = top - 4 + 11 * (j % 2)
        if lo <= x <= hi:
            body.append(f'<line class="threshold" x1="{sx(x):.1f}" y1="{top - 2}" x2="{sx(x):.1f}" y2="{top + ph}" '
                        f'stroke="#b00" stroke-width="1.5" stroke-dasharray="4 2"><title>{esc(text)}</title></line>')
            anchor = "end" if sx(x) > left + pw * 0.6 else "start"
            dx = -3 if anchor == "end" else 3
            body.append(f'<text x="{sx(x) + dx:.1f}" y="{ty + 6}" text-anchor="{anchor}" fill="#b00">{esc(text)}</text>')
        else:
            edge = left + pw if x > hi else left
            anchor = "end" if x > hi else "start"
            body.append(f'<text class="threshold" x="{edge}" y="{ty + 6}" text-anchor="{anchor}" fill="#b00">'
                        f'{"" if x > hi else "← "}{esc(text)}{" →" if x > hi else ""}</text>')
    return _svg(width, height, body, label)


def columns(labels: list[str], series: list[tuple[str, list[float]]], label: str, width: int = 640,
            height: int = 190, colors: list[str] = PALETTE, x_label: str = "", y_label: str = "") -> str:
    """Vertical stacked columns, one per label (at most a few hundred: aggregate before)."""
    left, right, top, bottom = 52, 10, 12, 40
    pw, ph = width - left - right, height - top - bottom
    n = max(len(labels), 1)
    sums = [sum(s[1][i] for s in series) for i in range(len(labels))]
    ymax = max(sums + [1])
    sy = lambda c: top + ph - ph * c / ymax  # noqa: E731
    cw = min(pw / n, 60.0)
    body = [f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#888"/>']
    for t in _ticks(0, ymax, 3):
        body.append(f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" fill="#666">{num(t)}</text>'
                    f'<line x1="{left}" y1="{sy(t):.1f}" x2="{left + pw}" y2="{sy(t):.1f}" stroke="#eee"/>')
    every = max(1, math.ceil(n / 12))
    for i, lab in enumerate(labels):
        x = left + i * cw
        base = 0
        for k, (name, vals) in enumerate(series):
            v = vals[i]
            if v:
                body.append(f'<rect x="{x + cw * 0.1:.1f}" y="{sy(base + v):.1f}" width="{max(cw * 0.8, 0.8):.1f}" '
                            f'height="{sy(base) - sy(base + v):.1f}" fill="{colors[k % len(colors)]}">'
                            f'<title>{esc(lab)}: {esc(name)} {num(v)}</title></rect>')
            base += v
        if i % every == 0:
            body.append(f'<text x="{x + cw / 2:.1f}" y="{top + ph + 13}" text-anchor="middle" fill="#666">'
                        f'{esc(_clip(str(lab), 14))}</text>')
    if x_label:
        body.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" fill="#444">{esc(x_label)}</text>')
    if y_label:
        body.append(f'<text x="10" y="{top + ph / 2}" transform="rotate(-90 10 {top + ph / 2})" '
                    f'text-anchor="middle" fill="#444">{esc(y_label)}</text>')
    return _svg(width, height, body, label)
