#!/usr/bin/env python3
"""Nested leave-one-group-out over candidate configurations (docs/DYNAMIC.md).

For each group of the NAB tuning subset, the candidate scoring best on the other groups (each
at the threshold optimised on them) is chosen, then the group is scored with that candidate and
the threshold chosen on the other groups (as `nab_score.py --logo` does). The total is
normalised over all files like a plain score. It is what choosing among the candidates is worth
on a group nobody chose on.

    bench/nab_nested.py SCORER DATA LABELS RESULT_DIR...
"""
import re
import subprocess
import sys


def run(scorer, data, labels, args):
    out = subprocess.run(
        ["python3", scorer, "--data", data, "--labels", labels] + args,
        capture_output=True, text=True, check=True,
    ).stdout
    return out


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    scorer, data, labels, dirs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    held = {}
    groups = None
    null = perfect = None
    for d in dirs:
        out = run(scorer, data, labels, ["--results", d, "--logo"])
        rows = re.findall(r"\] (\S+)\s+threshold \S+ \(from the other groups\):.*? raw (-?[0-9.]+)", out)
        held[d] = {g: float(raw) for g, raw in rows}
        groups = groups or [g for g, _ in rows]
        if null is None:
            plain = run(scorer, data, labels, ["--results", d])
            m = re.search(r"null (-?[0-9.]+), perfect (-?[0-9.]+)", plain)
            null, perfect = float(m.group(1)), float(m.group(2))
    total = 0.0
    for g in groups:
        others = [o for o in groups if o != g]
        best = None
        for d in dirs:
            out = run(scorer, data, labels, ["--results", d, "--only"] + others)
            score = float(re.search(r"NAB standard score: (-?[0-9.]+)", out).group(1))
            if best is None or score > best[0]:
                best = (score, d)
        total += held[best[1]][g]
        print(f"{g:28} chosen on the others: {best[1]}")
    print(f"nested leave-one-group-out score: {100 * (total - null) / (perfect - null):.2f} "
          f"(candidates {len(dirs)}, groups {len(groups)})")


if __name__ == "__main__":
    main()
