"""Targets, pass/fail and the printed table of a benchmark result.

A target passes only when its ratio was measured, meets the bound and every equivalence check
of its section held (a speed-up of a wrong computation does not count).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# key -> (comparison, bound, what it means)
TARGETS: dict[str, tuple[str, float, str]] = {
    "train_loop.lightning_vs_plain": (">=", 0.97, "Lightning throughput / plain loop"),
    "train_batching.token_budget_vs_fixed": (">=", 1.5, "token-budget tokens/s / fixed padding"),
    "inference_batching.token_budget_vs_pad_to_max": (
        ">=",
        2.0,
        "token-budget rows/s / pad-to-max",
    ),
    "tokenization.cache_hit_vs_miss": (">=", 20.0, "cache miss time / hit time"),
    "tokenization.formatter_vs_raw_encode": ("<=", 3.0, "our tokenize+format time / raw encode"),
    "scaling.peak_memory_ratio_16x_vs_1x": ("<=", 2.0, "peak memory at 16x rows / 1x (flat)"),
    "scaling.prep_per_row_cost_16x_vs_1x": ("<=", 1.5, "per-row prep time 16x / 1x (linear)"),
    "scaling.inference_per_row_cost_16x_vs_1x": ("<=", 1.5, "per-row inference time 16x / 1x"),
    "packing.train_packed_vs_padded": (">=", 1.0, "packed / padded token-budget training tokens/s"),
    "packing.score_packed_vs_padded": (">=", 1.0, "packed / padded token-budget scoring tokens/s"),
}


def equivalence_checks(section: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every equivalence record of a section: one, or a dict of them keyed by the ratio each
    one guards."""
    eq = section.get("equivalence")
    if eq is None:
        return
    if "ok" in eq:
        yield eq
    else:
        yield from eq.values()


def judge(ratios: dict[str, float], sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Pass/fail of every target whose section ran."""
    out: dict[str, Any] = {}
    for key, (op, bound, meaning) in TARGETS.items():
        name = key.split(".")[0]
        if name not in sections:
            continue
        section = sections[name]
        value = ratios.get(key)
        own = (section.get("equivalence") or {}).get(key)  # a check of this ratio alone
        checks = [own] if own else list(equivalence_checks(section))
        equivalent = all(c["ok"] for c in checks)
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        out[key] = {
            "target": f"{op} {bound}",
            "meaning": meaning,
            "measured": value,
            "equivalent": equivalent,
            "pass": bool(met and equivalent),
            "skipped": section.get("skipped"),
        }
    return out


def table(result: dict[str, Any]) -> str:
    """The readable summary: every ratio with its target and verdict, then the load."""
    lines = [f"{'ratio':<50} {'value':>9}  {'target':<9} verdict"]
    targets = result["targets"]
    for key, value in sorted(result["ratios"].items()):
        t = targets.get(key)
        verdict = "" if t is None else ("PASS" if t["pass"] else "FAIL")
        if t is not None and not t["equivalent"]:
            verdict += " (not equivalent)"
        shown = "n/a" if value is None else f"{value:9.3f}"
        lines.append(f"{key:<50} {shown:>9}  {t['target'] if t else '':<9} {verdict}")
    for name, section in result["sections"].items():
        if section.get("skipped"):
            lines.append(f"{name}: skipped ({section['skipped']})")
        for check in equivalence_checks(section):
            state = "ok" if check["ok"] else "FAILED"
            lines.append(
                f"{name}: equivalence {state}: {check['check']} "
                f"(max diff {check['max_diff']:.2e}, tol {check['tol']:.0e})"
            )
        if "loadavg" in section:
            lines.append(
                f"{name}: load {section['loadavg']['start']} -> {section['loadavg']['end']}, "
                f"{section['seconds']:.1f} s"
            )
    return "\n".join(lines)
