#!/usr/bin/env python3
"""Draws bench/run.sh's results as an SVG (standard library only).

usage: chart.py DATA.tsv OUT.svg [FIXED_RATE]

DATA.tsv has one line per target: key, label, req/s, ratio to (b) ("—"
when not measured), p99 in ms at the fixed rate (empty when not measured).
Left panel: throughput per target, with the ratio to nginx's proxy (b).
Right panel: p99 latency at the fixed rate, for the targets measured so.
"""

import sys
from xml.sax.saxutils import escape

ROW_H = 28
TOP = 56
LABEL_W = 330
PANEL_W = 300
GAP = 150
COLOURS = {"a": "#9e9e9e", "b": "#3b73b9", "f": "#c0504d"}
PORTCULLIS = "#e8a33d"


def read(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 5:
                continue
            key, label, rps, ratio, p99 = parts[:5]
            rows.append(
                {
                    "key": key,
                    "label": label,
                    "rps": float(rps or 0),
                    "ratio": ratio,
                    "p99": float(p99) if p99 else None,
                }
            )
    return rows


def text(x, y, s, anchor="start", size=13, weight="normal"):
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'font-weight="{weight}">{escape(s)}</text>'
    )


def bar(x, y, w, colour):
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 1):.1f}" height="{ROW_H - 10}" fill="{colour}"/>'


def draw(rows, rate):
    height = TOP + ROW_H * len(rows) + 40
    width = LABEL_W + PANEL_W + GAP + PANEL_W + 90
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    x1 = LABEL_W
    x2 = LABEL_W + PANEL_W + GAP
    out.append(text(x1, 22, "Throughput (req/s, median round; × nginx proxy)", weight="bold"))
    fixed = f" at {rate} req/s" if rate else ""
    out.append(text(x2, 22, f"p99 latency at a fixed rate{fixed} (ms)", weight="bold"))
    max_rps = max((r["rps"] for r in rows), default=1) or 1
    p99s = [r["p99"] for r in rows if r["p99"] is not None]
    max_p99 = max(p99s, default=1) or 1
    for i, r in enumerate(rows):
        y = TOP + i * ROW_H
        colour = COLOURS.get(r["key"], PORTCULLIS)
        out.append(text(x1 - 8, y + 13, f"({r['key']}) {r['label']}", anchor="end", size=12))
        w = PANEL_W * r["rps"] / max_rps
        out.append(bar(x1, y, w, colour))
        ratio = "" if r["ratio"] in ("", "—") else f"  {r['ratio']}×"
        out.append(text(x1 + w + 4, y + 13, f"{r['rps']:.0f}{ratio}", size=11))
        if r["p99"] is not None:
            w = PANEL_W * r["p99"] / max_p99
            out.append(bar(x2, y, w, colour))
            out.append(text(x2 + w + 4, y + 13, f"{r['p99']:.2f}", size=11))
    axis_y = TOP + ROW_H * len(rows)
    for x in (x1, x2):
        out.append(
            f'<line x1="{x}" y1="{TOP - 6}" x2="{x}" y2="{axis_y}" stroke="#444" stroke-width="1"/>'
        )
    out.append(
        text(
            x1,
            axis_y + 24,
            "grey: the upstream alone; blue: nginx proxy_pass; orange: Portcullis; red: Apache + mod_auth_openidc",
            size=11,
        )
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rows = read(sys.argv[1])
    rate = sys.argv[3] if len(sys.argv) > 3 else ""
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(draw(rows, rate))


if __name__ == "__main__":
    main()
