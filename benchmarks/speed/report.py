"""The targets, the verdict on each measured ratio or figure, and the printed table."""

from __future__ import annotations

from typing import Any

from .stack import version_key
from .stats import ratio

TARGETS: dict[str, tuple[str, float]] = {
    "C/K": ("<=", 0.75),
    "R/C": ("<=", 0.4),
    "S/Sk": ("<=", 0.45),
    "S/Sn": ("<=", 1.15),
    "setup p50": ("<=", 1.0),
    "setup p95": ("<=", 3.0),
    "reset p50": ("<=", 2.0),
    "D count": (">=", 12),
    "MiB per vcluster": ("<=", 300),
}
VALUE_WIDTH = 14  # "12.3s / 45.6s" and a space
NOT_MEASURED = "\u2014"  # an em dash: no figure, as opposed to a figure of zero
SUITES = (  # the test_work measurements, in the order the table shows them
    ("S", "vcluster"),
    ("S0", "vcluster, recycling off"),
    ("Sw1", "vcluster, warm pool, run 1 (parks)"),
    ("Sw", "vcluster, warm pool, run 2 (adopts)"),
    ("Sk", "kind per test"),
    ("Sn", "namespace per test"),
)


def sec(value: float | None) -> str:
    """Seconds as the table shows them, an em dash when not measured."""
    return NOT_MEASURED if value is None else f"{value:.1f}s"


def num(value: float | None, digits: int = 0) -> str:
    """A figure to ``digits`` decimals, an em dash when not measured."""
    return NOT_MEASURED if value is None else f"{value:.{digits}f}"


def verdicts(results: dict[str, Any], primary: str) -> list[dict[str, Any]]:
    """Ratios and figures that have targets, each with its target and whether it is met."""
    k = (results.get("K") or {}).get("median")
    c = results.get("C") or {}
    rows: list[tuple[str, str, float | None]] = [
        (f"C/K {v}", "C/K", ratio(c[v].get("median"), k)) for v in sorted(c, key=version_key)
    ]
    cs = results.get("Cs") or {}
    if cs:
        rows.append((f"C/K {cs['version']}, seeded (Cs)", "C/K", ratio(cs.get("median"), k)))
    r = results.get("R") or {}
    rows.append(
        (
            f"R/C {r.get('version', primary)}",
            "R/C",
            ratio(r.get("median"), (c.get(r.get("version", primary)) or {}).get("median")),
        )
    )
    s, sk, sn = results.get("S") or {}, results.get("Sk") or {}, results.get("Sn") or {}
    rows.append(("S/Sk", "S/Sk", ratio(s.get("wall"), sk.get("wall"))))
    rows.append(("S/Sn", "S/Sn", ratio(s.get("wall"), sn.get("wall"))))
    rows.append(("setup p50 (S)", "setup p50", (s.get("setup") or {}).get("p50")))
    rows.append(("setup p95 (S)", "setup p95", (s.get("setup") or {}).get("p95")))
    rows.append(("reset p50 (S)", "reset p50", (s.get("resets") or {}).get("p50")))
    sw = results.get("Sw") or {}
    if sw:
        rows.append(("setup p50 (Sw: S again, warm pool)", "setup p50", sw["setup"]["p50"]))
        rows.append(("setup p95 (Sw: S again, warm pool)", "setup p95", sw["setup"]["p95"]))
    d = results.get("D") or {}
    rows.append(("D idle Ready vclusters", "D count", d.get("count")))
    rows.append(("D MiB per vcluster", "MiB per vcluster", d.get("mib_per_vcluster")))
    out = []
    for label, target_name, value in rows:
        op, target = TARGETS[target_name]
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        out.append({"name": label, "value": value, "target": f"{op} {target:g}", "met": met})
    return out


def _line(name: str, value: str, note: str = "") -> str:
    return f"  {name:<44} {value:>{VALUE_WIDTH}}  {note}".rstrip()


def _figure_lines(res: dict[str, Any]) -> list[str]:
    lines: list[str] = []

    def row(name: str, value: str, note: str = "") -> None:
        lines.append(_line(name, value, note))

    k = res.get("K") or {}
    if k:
        row(f"K   kind create -> Ready node (n={len(k['samples'])})", sec(k["median"]))

    def timed(label: str, figure: dict[str, Any]) -> None:
        """A median of timed starts (C, C0, Cs, R): where it came from, and the wall's."""
        row(
            f"{label} (n={len(figure['samples'])})",
            sec(figure["median"]),
            f"{figure['source']}; wall {sec(figure['wall_median'])}",
        )

    for version, c in sorted((res.get("C") or {}).items(), key=lambda kv: version_key(kv[0])):
        timed(f"C   vcluster create -> ready, {version}", c)
    c0 = res.get("C0") or {}
    if c0:
        timed(f"C0  the same before: CLI, chart values, {c0['version']}", c0)
    cs = res.get("Cs") or {}
    if cs:
        timed(f"Cs  the same from a seed, {cs['version']}", cs)
    levers = res.get("L") or {}
    for label, figure in (levers.get("variants") or {}).items():
        saves = figure.get("saves")
        row(
            f"L   {label} (n={len(figure['samples'])})",
            sec(figure["median"]),
            "" if saves is None or label == "all levers" else f"the lever saves {sec(saves)}",
        )
    r = res.get("R") or {}
    if r:
        timed(f"R   resume -> ready, {r['version']}", r)
    for key, what in SUITES:
        suite = res.get(key) or {}
        if suite:
            lines += _suite_lines(key, what, suite)
    if res.get("S") and k:
        row("S + K (S with its host created, cold)", sec(res["S"]["wall"] + k["median"]))
    d = res.get("D") or {}
    if d:
        row(f"D   idle Ready vclusters ({d['created']} created)", str(d["count"]), d["stop"])
        row("    host MiB per idle vcluster", num(d["mib_per_vcluster"]))
    return lines


def _suite_lines(key: str, what: str, suite: dict[str, Any]) -> list[str]:
    """A test_work measurement: wall time, setup waits, teardowns, and for vclusters where
    each test's cluster came from and how long the resets took."""
    lines: list[str] = []

    def row(name: str, value: str, note: str = "") -> None:
        lines.append(_line(name, value, note))

    row(f"{key:<3} {suite['tests']} tests, -n {suite['workers']}, {what}", sec(suite["wall"]))
    setup, durations = suite["setup"], suite["setup_durations"]
    row(
        "    setup wait p50 / p95",
        f"{sec(setup['p50'])} / {sec(setup['p95'])}",
        f"{setup['source']}; --durations {sec(durations['p50'])} / {sec(durations['p95'])}",
    )
    teardown = suite["teardown_durations"]
    row("    teardown p50 / p95", f"{sec(teardown['p50'])} / {sec(teardown['p95'])}", "--durations")
    if "setup_sources" in suite:
        sources = suite["setup_sources"]
        recycled = suite.get("recycled_setups")
        of_all = NOT_MEASURED if recycled is None else f"{recycled} of {sum(sources.values())}"
        by_source = ", ".join(f"{n} {source}" for source, n in sorted(sources.items()))
        row("    setups from a recycled cluster", of_all, by_source)
    if "resets" in suite:
        resets = suite["resets"] or {}
        row(
            "    reset p50 / p95",
            f"{sec(resets.get('p50'))} / {sec(resets.get('p95'))}",
            f"{resets['clean']} of {resets['n']} proven clean" if resets.get("n") else "",
        )
        hold = resets.get("hold") or {}
        if hold:
            row(
                "    then held for token caches p50",
                sec(hold.get("p50")),
                "until 15.5 s after the last test's last possible use",
            )
    clusters = suite.get("worker_clusters") or {}
    if clusters:
        row(
            f"    kind cluster per worker p50 (n={clusters['n']})",
            sec(clusters["p50"]),
            f"namespace setup p50 {sec((suite.get('namespace_setup') or {}).get('p50'))}",
        )
    return lines


def _verdict_lines(data: dict[str, Any]) -> list[str]:
    lines = [f"  {'ratio / figure':<44} {'value':>{VALUE_WIDTH}}  {'target':<8} verdict"]
    for v in data["verdicts"]:
        value = v["value"]
        shown = f"{value:.2f}" if isinstance(value, float) else num(value)
        verdict = {True: "met", False: "MISSED", None: "not measured"}[v["met"]]
        lines.append(f"  {v['name']:<44} {shown:>{VALUE_WIDTH}}  {v['target']:<8} {verdict}")
    res = data["results"]
    walls = {key: (res.get(key) or {}).get("wall") for key, _ in SUITES}
    k = (res.get("K") or {}).get("median")
    cold = walls["S"] + k if walls["S"] is not None and k is not None else None
    for name, value in (
        ("(S + K)/Sk, for information", ratio(cold, walls["Sk"])),
        ("(S + K)/Sn, for information", ratio(cold, walls["Sn"])),
        ("S/S0 (recycling on / off), for information", ratio(walls["S"], walls["S0"])),
        ("Sw/Sn (a second run, warm pool), for info", ratio(walls["Sw"], walls["Sn"])),
    ):
        if value is not None:
            lines.append(f"  {name:<44} {value:>{VALUE_WIDTH}.2f}")
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
