"""The targets, the verdict on each measured ratio or figure, and the printed table."""

from __future__ import annotations

from typing import Any

from .stack import version_key
from .stats import ratio

TARGETS: dict[str, tuple[str, float]] = {
    "C/K": ("<=", 0.75),
    "R/C": ("<=", 0.4),
    "S/Sk": ("<=", 0.5),
    "setup p50": ("<=", 1.0),
    "D count": (">=", 12),
    "MiB per vcluster": ("<=", 300),
}


def sec(value: float | None) -> str:
    """Seconds as the table shows them, ``-`` when not measured."""
    return "-" if value is None else f"{value:.1f}s"


def num(value: float | None, digits: int = 0) -> str:
    """A figure to ``digits`` decimals, ``-`` when not measured."""
    return "-" if value is None else f"{value:.{digits}f}"


def verdicts(results: dict[str, Any], primary: str) -> list[dict[str, Any]]:
    """Ratios and figures that have targets, each with its target and whether it is met."""
    k = (results.get("K") or {}).get("median")
    c = results.get("C") or {}
    rows: list[tuple[str, str, float | None]] = [
        (f"C/K {v}", "C/K", ratio(c[v].get("median"), k)) for v in sorted(c, key=version_key)
    ]
    r = results.get("R") or {}
    rows.append(
        (
            f"R/C {r.get('version', primary)}",
            "R/C",
            ratio(r.get("median"), (c.get(r.get("version", primary)) or {}).get("median")),
        )
    )
    s, sk = results.get("S") or {}, results.get("Sk") or {}
    rows.append(("S/Sk", "S/Sk", ratio(s.get("wall"), sk.get("wall"))))
    rows.append(("setup p50 (S)", "setup p50", (s.get("setup") or {}).get("p50")))
    d = results.get("D") or {}
    rows.append(("D idle Ready vclusters", "D count", d.get("count")))
    rows.append(("D MiB per vcluster", "MiB per vcluster", d.get("mib_per_vcluster")))
    out = []
    for label, target_name, value in rows:
        op, target = TARGETS[target_name]
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        out.append({"name": label, "value": value, "target": f"{op} {target:g}", "met": met})
    return out


def _figure_lines(res: dict[str, Any]) -> list[str]:
    lines: list[str] = []

    def row(name: str, value: str, note: str = "") -> None:
        lines.append(f"  {name:<44} {value:>12}  {note}".rstrip())

    k = res.get("K") or {}
    if k:
        row(f"K   kind create -> Ready node (n={len(k['samples'])})", sec(k["median"]))
    for version, c in sorted((res.get("C") or {}).items(), key=lambda kv: version_key(kv[0])):
        row(
            f"C   vcluster create -> ready, {version} (n={len(c['samples'])})",
            sec(c["median"]),
            f"{c['source']}; wall {sec(c['wall_median'])}",
        )
    c0 = res.get("C0") or {}
    if c0:
        row(
            f"C0  the same before: CLI, chart values, {c0['version']} (n={len(c0['samples'])})",
            sec(c0["median"]),
            f"{c0['source']}; wall {sec(c0['wall_median'])}",
        )
    r = res.get("R") or {}
    if r:
        row(
            f"R   resume -> ready, {r['version']} (n={len(r['samples'])})",
            sec(r["median"]),
            f"{r['source']}; wall {sec(r['wall_median'])}",
        )
    for key, what in (("S", "vcluster"), ("Sk", "kind per test")):
        suite = res.get(key) or {}
        if not suite:
            continue
        row(f"{key:<3} {suite['tests']} tests, -n {suite['workers']}, {what}", sec(suite["wall"]))
        setup, durations = suite["setup"], suite["setup_durations"]
        row(
            "    setup wait p50 / p95",
            f"{sec(setup['p50'])} / {sec(setup['p95'])}",
            f"{setup['source']}; --durations {sec(durations['p50'])} / {sec(durations['p95'])}",
        )
        teardown = suite["teardown_durations"]
        row(
            "    teardown p50 / p95",
            f"{sec(teardown['p50'])} / {sec(teardown['p95'])}",
            "--durations",
        )
    if res.get("S") and k:
        row("S + K (S with its host created, cold)", sec(res["S"]["wall"] + k["median"]))
    d = res.get("D") or {}
    if d:
        row(f"D   idle Ready vclusters ({d['created']} created)", str(d["count"]), d["stop"])
        row("    host MiB per idle vcluster", num(d["mib_per_vcluster"]))
    return lines


def _verdict_lines(data: dict[str, Any]) -> list[str]:
    lines = [f"  {'ratio / figure':<44} {'value':>12}  {'target':<8} verdict"]
    for v in data["verdicts"]:
        value = v["value"]
        value = "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
        verdict = {True: "met", False: "MISSED", None: "not measured"}[v["met"]]
        lines.append(f"  {v['name']:<44} {value:>12}  {v['target']:<8} {verdict}")
    res = data["results"]
    s, sk, k = res.get("S") or {}, res.get("Sk") or {}, res.get("K") or {}
    if s and sk and k.get("median") and sk.get("wall"):
        cold = (s["wall"] + k["median"]) / sk["wall"]
        lines.append(f"  {'(S + K)/Sk, for information':<44} {cold:>12.2f}")
    return lines


def _phase_lines(res: dict[str, Any]) -> list[str]:
    tables = [
        (f"C phases, {version} (median seconds since create started)", c["phases"])
        for version, c in sorted((res.get("C") or {}).items(), key=lambda kv: version_key(kv[0]))
    ]
    if res.get("R"):
        r = res["R"]
        tables.append(
            (f"R phases, {r['version']} (median seconds since resume started)", r["phases"])
        )
    lines: list[str] = []
    for title, phases in tables:
        if not phases:
            continue
        lines += ["", f"  {title}", f"    {'phase':<20} {'cumulative':>10} {'delta':>8}"]
        lines += [
            f"    {p['phase']:<20} {num(p['cumulative'], 2):>10} {num(p['delta'], 2):>8}"
            for p in phases
        ]
    return lines


def table(data: dict[str, Any]) -> str:
    """The printed report: figures, ratios against targets, and the C phase breakdown."""
    lines = [*_figure_lines(data["results"]), "", *_verdict_lines(data)]
    lines += _phase_lines(data["results"])
    if data["errors"]:
        lines.append("")
        lines += [
            f"  error in {name}: {msg.splitlines()[0]}" for name, msg in data["errors"].items()
        ]
    return "\n".join(lines)
