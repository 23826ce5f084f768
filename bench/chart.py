"""SVG chart of ratios to nginx, standard library only (the benchmark must
run on a bare Debian with python3 and nothing else).

Ratios are drawn on a log2 scale around nginx = 1, so 2× and ½× are the same
length and one very large ratio does not flatten the others; values beyond
the axis are clipped and marked, and every bar's exact ratio and absolute
value are printed in the right-hand column.
"""

import math
from xml.sax.saxutils import escape

COLORS = {"direct": "#a0a0a0", "haproxy": "#4c78a8", "pylon": "#e45756"}
NAMES = {"direct": "direct to backend (no proxy)", "haproxy": "HAProxy", "pylon": "Pylon"}

WIDTH = 1000
LABEL_X = 230          # right edge of the row labels
PLOT_X0 = 245
PLOT_X1 = 745
VALUE_X = 760
BAR_H = 12
BAR_GAP = 3
ROW_PAD = 14
DOUBLINGS = 4          # the axis spans 1/16× .. 16×


def _x(r):
    mid = (PLOT_X0 + PLOT_X1) / 2
    half = (PLOT_X1 - PLOT_X0) / 2
    v = max(-DOUBLINGS, min(DOUBLINGS, math.log2(r))) if r > 0 else -DOUBLINGS
    return mid + half * v / DOUBLINGS


def _ratio_text(r):
    if r < 0.01:
        return "<0.01×"
    if r >= 100:
        return f"{r:,.0f}×"
    if r >= 10:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


def write_svg(path, panels, title):
    """panels: [(title, better, [(row label, nginx value text, [(series, ratio or None, value text)])])]
    better: "right" when higher is better, "left" when lower is better."""
    body = []
    y = 78
    for ptitle, better, prow in panels:
        if not prow:
            continue
        arrow = "better →" if better == "right" else "← better"
        body.append(f'<text x="{PLOT_X0}" y="{y}" class="ptitle">{escape(ptitle)}</text>')
        body.append(f'<text x="{PLOT_X1}" y="{y}" class="better">{arrow}</text>')
        y += 10
        top = y
        height = sum(max(1, len(bars)) * (BAR_H + BAR_GAP) + ROW_PAD for _, _, bars in prow)
        for k in range(-DOUBLINGS, DOUBLINGS + 1):
            gx = _x(2.0 ** k)
            cls = "one" if k == 0 else "grid"
            label = f"{2 ** k:g}×" if k >= 0 else f"1/{2 ** -k}×"
            body.append(f'<line x1="{gx:.1f}" y1="{top}" x2="{gx:.1f}" y2="{top + height}" class="{cls}"/>')
            body.append(f'<text x="{gx:.1f}" y="{top + height + 13}" class="tick">{label}</text>')
        body.append(f'<text x="{_x(1):.1f}" y="{top + height + 26}" class="tick">nginx</text>')
        for label, base, bars in prow:
            n = max(1, len(bars))
            row_h = n * (BAR_H + BAR_GAP)
            mid = y + row_h / 2
            body.append(f'<text x="{LABEL_X}" y="{mid - 1:.1f}" class="label">{escape(label)}</text>')
            body.append(f'<text x="{LABEL_X}" y="{mid + 11:.1f}" class="sub">nginx: {escape(base)}</text>')
            by = y
            for series, r, text in bars:
                color = COLORS.get(series, "#666")
                name = NAMES.get(series, series)
                if r is None:
                    body.append(f'<text x="{_x(1) + 6:.1f}" y="{by + BAR_H - 2}" class="na" '
                                f'fill="{color}">{escape(name)}: {escape(text)}</text>')
                else:
                    x0, x1 = sorted((_x(1), _x(r)))
                    clipped = r > 2 ** DOUBLINGS or r < 2 ** -DOUBLINGS
                    body.append(f'<rect x="{x0:.1f}" y="{by}" width="{max(x1 - x0, 1.5):.1f}" '
                                f'height="{BAR_H}" fill="{color}"><title>{escape(name)}: '
                                f'{_ratio_text(r)} nginx ({escape(text)})</title></rect>')
                    if clipped:
                        cx = _x(r)
                        sign = 1 if r > 1 else -1
                        body.append(f'<path d="M{cx - 4 * sign:.1f},{by - 1} L{cx + 3 * sign:.1f},'
                                    f'{by + BAR_H / 2} L{cx - 4 * sign:.1f},{by + BAR_H + 1} Z" '
                                    f'fill="white" stroke="{color}"/>')
                    body.append(f'<text x="{VALUE_X}" y="{by + BAR_H - 2}" class="val" fill="{color}">'
                                f'{_ratio_text(r)} ({escape(text)})</text>')
                by += BAR_H + BAR_GAP
            y += row_h + ROW_PAD
        y += 50
    height = y - 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
           """<style>
  .title { font-size: 15px; font-weight: bold; fill: #222; }
  .ptitle { font-size: 13px; font-weight: bold; fill: #333; }
  .better { font-size: 11px; fill: #555; text-anchor: end; }
  .label { font-size: 12px; fill: #222; text-anchor: end; }
  .sub { font-size: 10px; fill: #777; text-anchor: end; }
  .val { font-size: 10.5px; }
  .na { font-size: 11px; font-style: italic; }
  .tick { font-size: 10px; fill: #777; text-anchor: middle; }
  .legend { font-size: 12px; fill: #222; }
  .grid { stroke: #e4e4e4; stroke-width: 1; }
  .one { stroke: #000; stroke-width: 1.5; stroke-dasharray: 4 3; }
</style>""",
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="12" y="22" class="title">{escape(title)}</text>']
    lx = PLOT_X0
    for series in ("direct", "haproxy", "pylon"):
        out.append(f'<rect x="{lx}" y="38" width="12" height="12" fill="{COLORS[series]}"/>')
        out.append(f'<text x="{lx + 16}" y="48" class="legend">{escape(NAMES[series])}</text>')
        lx += 16 + 7 * len(NAMES[series]) + 28
    out.append(f'<text x="{VALUE_X}" y="48" class="legend">ratio to nginx (value)</text>')
    out += body
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
