"""Two models under the same listening conditions, paired clip by clip.

``physioser robustness --out A.json`` of two models on the same held-out clips and seed hears the
same audio under every condition (seeded per clip), so the models can be compared clip by clip:

    python -m physioser.conditions.compare A.json --against B.json [--out A-vs-B.md]

prints, per condition, each model's UA overall and per corpus, the difference, the clips only one
of them gets right, and the exact two-sided sign test over those clips. Models trained with several
seeds (or on several draws of held-out speakers, ``--pairs draws``) are compared pair by pair, the
i-th result against the i-th reference:

    python -m physioser.conditions.compare A0.json A1.json A2.json --against B0.json B1.json B2.json

prints, per condition, the UA of each (mean ± std over the pairs), the paired difference (mean ± std,
pairs ahead), its mean per corpus, and each pair's clips right only with one model and sign test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from physioser.conditions.evaluate import paired

__all__ = ["compare", "markdown", "markdown_pairs", "sign_test"]


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


def markdown_pairs(results: list[dict[str, dict]], new_name: str, old_name: str, kind: str = "seeds") -> str:
    """Several :func:`compare` results (one per pair of ``kind``: seeds, or draws of held-out speakers):
    one row per condition all of them hold."""
    import numpy as np

    specs = [s for s in results[0] if all(s in r for r in results)]
    if not specs:
        return "(no condition with per-clip predictions in every pair)\n"
    corpora = sorted({c for r in results for s in specs for c in r[s]["corpora"]})
    n = len(results)
    lines = [f"| condition | {new_name} ({n} {kind}) | {old_name} ({n} {kind}) | paired difference (pairs ahead) | "
             + " | ".join(f"{c} difference" for c in corpora)
             + f" | clips right only with {new_name} / {old_name} per pair (sign test p) |",
             "|" + "---|" * (5 + len(corpora))]
    for spec in specs:
        rows = [r[spec] for r in results]
        a, b = np.array([r["ua_new"] for r in rows]), np.array([r["ua_old"] for r in rows])
        d = a - b
        per_corpus = [f"{np.mean([r['corpora'][c][0] - r['corpora'][c][1] for r in rows]):+.3f}"
                      if all(c in r["corpora"] for r in rows) else "" for c in corpora]
        tallies = ", ".join(f"{r['only_new_right']} / {r['only_old_right']} ({_p(r['p'])})" for r in rows)
        lines.append(f"| {spec} | {a.mean():.3f} ± {a.std():.3f} | {b.mean():.3f} ± {b.std():.3f} | "
                     f"{d.mean():+.3f} ± {d.std():.3f} ({int((d > 0).sum())}/{n}) | " + " | ".join(per_corpus) + f" | {tallies} |")
    return "\n".join(lines) + "\n"


def _cell(new: float, old: float) -> str:
    return f"{new:.3f} / {old:.3f} ({new - old:+.3f})"


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.0e}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m physioser.conditions.compare", description=__doc__.splitlines()[0])
    ap.add_argument("new", type=Path, nargs="+", help="JSON of `physioser robustness --out` for the model under test (one per seed)")
    ap.add_argument("--against", type=Path, nargs="+", required=True,
                    help="JSON of the reference model on the same clips (one per seed, in the same order)")
    ap.add_argument("--names", nargs=2, default=None, metavar=("NEW", "OLD"), help="column names (default: the file stems)")
    ap.add_argument("--pairs", choices=("seeds", "draws"), default="seeds",
                    help="what the results pair over: training seeds, or draws of held-out speakers (train.split_seed)")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here too")
    a = ap.parse_args(argv)
    if len(a.new) != len(a.against):
        raise SystemExit(f"{len(a.new)} results against {len(a.against)} references: give one reference per result")
    pairs = []
    for new_path, old_path in zip(a.new, a.against):
        try:
            pairs.append(compare(_read(new_path), _read(old_path)))
        except (KeyError, ValueError) as exc:
            raise SystemExit(f"{new_path} against {old_path}: {exc}") from exc
    new_name, old_name = a.names or (a.new[0].stem, a.against[0].stem)
    table = markdown(pairs[0], new_name, old_name) if len(pairs) == 1 else markdown_pairs(pairs, new_name, old_name, a.pairs)
    print(table, end="")
    if a.out:
        command = " ".join(["python -m physioser.conditions.compare", *map(str, a.new), "--against", *map(str, a.against),
                            *(["--names", *a.names] if a.names else []), *(["--pairs", a.pairs] if a.pairs != "seeds" else [])])
        a.out.write_text(f"`{command}`\n\n{table}")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{path}: not a readable results file of physioser robustness ({type(exc).__name__})") from exc


if __name__ == "__main__":
    main()
