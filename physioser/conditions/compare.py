"""Two models under the same listening conditions, paired clip by clip.

``physioser robustness --out A.json`` of two models on the same held-out clips and seed hears the
same audio under every condition (seeded per clip), so the models can be compared clip by clip:

    python -m physioser.conditions.compare A.json --against B.json [--out A-vs-B.md]

prints, per condition, each model's UA overall and per corpus, the difference, the clips only one
of them gets right, and the exact two-sided sign test over those clips.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from physioser.conditions.evaluate import paired

__all__ = ["compare", "markdown", "sign_test"]


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test p-value of ``wins`` against ``losses`` (ties left out); 1 with none."""
    from scipy.stats import binomtest

    return float(binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0


def compare(new: dict, old: dict) -> dict[str, dict]:
    """{condition: :func:`~physioser.conditions.evaluate.paired`'s figures + ``p`` (sign test) and
    ``corpora`` {corpus: (UA new, UA old)}} for the conditions both results hold per clip."""
    out = paired(new, old)
    for spec, figures in out.items():
        figures["p"] = sign_test(figures["only_new_right"], figures["only_old_right"])
        a, b = new["conditions"][spec], old["conditions"][spec]
        figures["corpora"] = {c: (a[c]["ua"], b[c]["ua"]) for c in sorted(a) if isinstance(a[c], dict) and "ua" in a[c]
                              and c != "all" and c in b}
    return out


def markdown(result: dict[str, dict], new_name: str, old_name: str) -> str:
    """One row per condition: UA of both models overall and per corpus (new − old), clips right only
    under each, sign-test p."""
    if not result:
        return "(no condition with per-clip predictions in both results)\n"
    corpora = sorted({c for r in result.values() for c in r["corpora"]})
    head = (f"| condition | {new_name} | {old_name} | difference | " + " | ".join(f"{c} ({new_name} / {old_name})" for c in corpora)
            + f" | clips right only with {new_name} / {old_name} (sign test p) |")
    lines = [head, "|" + "---|" * (5 + len(corpora))]
    for spec, r in result.items():
        cells = [_cell(*r["corpora"][c]) if c in r["corpora"] else "" for c in corpora]
        lines.append(f"| {spec} | {r['ua_new']:.3f} | {r['ua_old']:.3f} | {r['ua_diff']:+.3f} | " + " | ".join(cells)
                     + f" | {r['only_new_right']} / {r['only_old_right']} (p {_p(r['p'])}) |")
    return "\n".join(lines) + "\n"


def _cell(new: float, old: float) -> str:
    return f"{new:.3f} / {old:.3f} ({new - old:+.3f})"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.0e}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m physioser.conditions.compare", description=__doc__.splitlines()[0])
    ap.add_argument("new", type=Path, help="JSON of `physioser robustness --out` for the model under test")
    ap.add_argument("--against", type=Path, required=True, help="JSON of the reference model on the same clips")
    ap.add_argument("--names", nargs=2, default=None, metavar=("NEW", "OLD"), help="column names (default: the file stems)")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here too")
    a = ap.parse_args(argv)
    results = []
    for path in (a.new, a.against):
        try:
            results.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"{path}: not a readable results file of physioser robustness ({type(exc).__name__})") from exc
    try:
        result = compare(*results)
    except (KeyError, ValueError) as exc:
        raise SystemExit(f"{a.new} against {a.against}: {exc}") from exc
    new_name, old_name = a.names or (a.new.stem, a.against.stem)
    table = markdown(result, new_name, old_name)
    print(table, end="")
    if a.out:
        a.out.write_text(f"`python -m physioser.conditions.compare {a.new} --against {a.against}`\n\n{table}")


if __name__ == "__main__":
    main()
