"""``speed.png``: the run's figures in six panels (needs matplotlib, the ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import SUITES, num
from .stack import version_key

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _panel_times(ax: Axes, data: dict[str, Any]) -> str | None:
    res = data["results"]
    bars: list[tuple[str, float]] = []
    if (res.get("K") or {}).get("median") is not None:
        bars.append(("K kind", res["K"]["median"]))
    for version, c in sorted((res.get("C") or {}).items(), key=lambda kv: version_key(kv[0])):
        if c["median"] is not None:
            bars.append((f"C {version}", c["median"]))
    if (res.get("R") or {}).get("median") is not None:
        bars.append((f"R {res['R']['version']}", res["R"]["median"]))
    if not bars:
        return None
    ax.bar([b[0] for b in bars], [b[1] for b in bars], color="tab:blue")
    ax.set_ylabel("seconds")
    return "to a ready cluster (median s)"


def _panel_walls(ax: Axes, data: dict[str, Any]) -> str | None:
    res = data["results"]
    walls = [(n, res[n]["wall"]) for n, _ in SUITES if (res.get(n) or {}).get("wall")]
    if not walls:
        return None
    colors = {"S": "tab:green", "S0": "tab:olive", "Sk": "tab:red", "Sn": "tab:orange"}
    colors |= {"Sw1": "tab:cyan", "Sw": "tab:blue"}
    ax.bar(
        [n for n, _ in walls],
        [w for _, w in walls],
        color=[colors.get(n, "tab:gray") for n, _ in walls],
    )
    ax.set_ylabel("seconds")
    first = res[walls[0][0]]
    return f"{first['tests']} tests at -n {first['workers']}: wall (s)"


def _panel_ratios(ax: Axes, data: dict[str, Any]) -> str | None:
    ratios = [v for v in data["verdicts"] if "/" in v["name"] and v["value"] is not None]
    if not ratios:
        return None
    colors = ["tab:green" if v["met"] else "tab:red" for v in ratios]
    ax.bar([v["name"] for v in ratios], [v["value"] for v in ratios], color=colors)
    for i, v in enumerate(ratios):
        ax.hlines(float(v["target"].split()[1]), i - 0.4, i + 0.4, colors="black", linestyles="--")
    ax.tick_params(axis="x", labelrotation=20)
    return "ratios (dashed: target)"


def _panel_phases(ax: Axes, data: dict[str, Any]) -> str | None:
    phased = {v: c["phases"] for v, c in (data["results"].get("C") or {}).items() if c["phases"]}
    if not phased:
        return None
    versions = sorted(phased, key=version_key)
    # One colour per phase name ("C0".."C9" of the default cycle), the same in every row.
    colors: dict[str, str] = {}
    for y, version in enumerate(versions):
        left = 0.0
        for p in phased[version]:
            width = p["delta"] or 0.0
            new = p["phase"] not in colors
            color = colors.setdefault(p["phase"], f"C{len(colors) % 10}")
            ax.barh(y, width, left=left, height=0.5, color=color, label=p["phase"] if new else None)
            left += width
    ax.set_yticks(range(len(versions)), versions)
    ax.set_ylim(-0.5, len(versions) + 0.5)  # room above the bars for the legend
    ax.set_xlabel("seconds (median per phase)")
    ax.legend(fontsize="small", loc="upper center", ncol=4)
    return "C phases"


def _panel_density(ax: Axes, data: dict[str, Any]) -> str | None:
    d = data["results"].get("D") or {}
    creates = [c for c in d.get("creates", []) if c.get("ok")]
    if not creates:
        return None
    xs = [c["index"] + 1 for c in creates]
    ax.plot(xs, [c["memory_mib"] for c in creates], marker="o", color="tab:purple")
    ax.set_xlabel("idle vclusters")
    ax.set_xticks(xs)
    ax.set_ylabel("host node MiB", color="tab:purple")
    twin = ax.twinx()
    twin.plot(xs, [c["seconds"] for c in creates], marker="x", color="tab:orange")
    twin.set_ylabel("create s", color="tab:orange")
    return f"D: {d['count']} Ready, {num(d['mib_per_vcluster'])} MiB each"


def _panel_setups(ax: Axes, data: dict[str, Any]) -> str | None:
    res = data["results"]
    waits = {n: res[n]["setup"]["samples"] for n, _ in SUITES if n in res}
    waits = {n: w for n, w in waits.items() if w}
    if not waits:
        return None
    ax.boxplot(list(waits.values()), tick_labels=list(waits))
    ax.set_yscale("log")
    return "fixture setup wait per test (s)"


PANELS: list[tuple[str, Callable[[Axes, dict[str, Any]], str | None]]] = [
    ("to a ready cluster", _panel_times),
    ("suite wall time", _panel_walls),
    ("ratios", _panel_ratios),
    ("C phases", _panel_phases),
    ("density", _panel_density),
    ("setup waits", _panel_setups),
]


def chart(data: dict[str, Any], path: Path) -> bool:
    """Draw the figures as a PNG; False (with a message) when matplotlib is not installed."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional: only the chart needs it

        mpl.use("Agg")  # no display: draw to a file
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print(f"matplotlib is not installed, so no {path}: pip install -e '.[bench]'")
        return False
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    fig.suptitle(f"pytest-vcluster speed ({data['machine']['cpus']} CPUs, {data['started']})")
    for ax, (name, draw) in zip(axes.flat, PANELS, strict=True):
        title = draw(ax, data)
        if title is None:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        ax.set_title(title or name)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
