#!/usr/bin/env python3
"""Draws the dashboard's panels (config/grafana/entitlement-operator.json) into one PNG, from the
range queries hack/dashboard-capture.ts recorded against a real Prometheus scrape. No Grafana and
no network: matplotlib only, laid out on the dashboard's own 24-column grid.

    python3 hack/render-dashboard.py /tmp/dashboard.json config/grafana/dashboard.png
"""
import json
import math
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def human(value, unit):
    """A value as Grafana would print it for the panel's unit (the few units the dashboard uses)."""
    if value is None or math.isnan(value):
        return "no data"
    if unit == "s":
        for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
            if abs(value) >= size:
                return f"{value / size:.1f} {name}"
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit in ("ops", "reqps"):
        return f"{value:.2f}/s"
    return f"{value:g}" if abs(value) >= 1 or value == 0 else f"{value:.2f}"


def legend(template, labels):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip() or "value"


def points(series):
    times, values = [], []
    for t, v in series.get("values", []):
        times.append(float(t))
        values.append(float(v))
    return times, values


def stat(ax, panel, end):
    # As Grafana shows a stat now: only series that still have a value at the end of the run.
    lines = []
    for target in panel["targets"]:
        for series in target["series"]:
            times, values = points(series)
            if times and times[-1] >= end - 10 and not math.isnan(values[-1]):
                lines.append((legend(target["legendFormat"], series["metric"]), values[-1]))
    ax.set_axis_off()
    if not lines:
        ax.text(0.5, 0.45, "no data", ha="center", va="center", fontsize=16, color="#888")
    for i, (name, value) in enumerate(lines[:3]):
        y = 0.45 - i * 0.3 if len(lines) > 1 else 0.4
        text = human(value, panel["unit"]) + (f"  {name}" if len(lines) > 1 else "")
        ax.text(0.5, y, text, ha="center", va="center", fontsize=18 if len(lines) == 1 else 11, color="#1f7a1f", weight="bold")


def timeseries(ax, panel, start, end):
    bars = panel["title"].startswith("Metering records") or panel["title"] == "Metering hours lost"
    drawn = 0
    # A rate beside latencies goes on an axis of its own, on the right (the dashboard's override).
    right = None
    for target in panel["targets"]:
        on = ax
        if target["legendFormat"] == "requests/s":
            right = right or ax.twinx()
            on = right
            on.set_ylabel("requests per second", fontsize=7)
            on.tick_params(labelsize=7)
        for series in target["series"]:
            times, values = points(series)
            if not times:
                continue
            minutes = [(t - start) / 60 for t in times]
            name = legend(target["legendFormat"], series["metric"])
            if bars:
                on.bar(minutes, values, width=4 / 60 * 0.9, label=name)
            else:
                on.plot(minutes, values, label=name, linewidth=1.2, color="#999" if on is right else None, linestyle="--" if on is right else "-")
            drawn += 1
    if bars:
        ax.set_ylim(bottom=0, top=max(1, ax.get_ylim()[1]))
    if right:
        right.legend(fontsize=6, loc="upper right")
    ax.set_xlim(0, (end - start) / 60)
    ax.set_xlabel("minutes into the run", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    unit = {"s": "seconds", "ops": "per second", "reqps": "per second"}.get(panel["unit"], "")
    if unit:
        ax.set_ylabel(unit, fontsize=7)
    if drawn == 0:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="#888")
    elif drawn <= 8:
        ax.legend(fontsize=6, loc="upper left")
    else:
        ax.legend(fontsize=5, loc="upper left", ncol=2)


def main():
    source, target = sys.argv[1], sys.argv[2]
    with open(source) as f:
        run = json.load(f)
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in run["panels"])
    fig = plt.figure(figsize=(18, rows * 0.5 + 0.8), dpi=100)
    fig.suptitle("Entitlement operator — " + run["caption"], fontsize=11, x=0.01, ha="left")
    top = 1 - 0.6 / (rows * 0.5 + 0.8)
    for panel in run["panels"]:
        g = panel["gridPos"]
        # Grid units to figure fractions, with a margin inside each cell for titles and ticks.
        left, width = g["x"] / 24 + 0.025, g["w"] / 24 - 0.035
        height = g["h"] / rows * top
        bottom = top - (g["y"] + g["h"]) / rows * top
        is_stat = panel["type"] == "stat"
        ax = fig.add_axes([left, bottom + (0.01 if is_stat else 0.035), width, height - (0.04 if is_stat else 0.07)])
        ax.set_title(panel["title"], fontsize=9, loc="left")
        if is_stat:
            stat(ax, panel, run["end"])
        else:
            timeseries(ax, panel, run["start"], run["end"])
    fig.savefig(target)


if __name__ == "__main__":
    main()
