#!/usr/bin/env python3
"""Is a change to the detector real, or the luck of a few windows? (docs/DYNAMIC.md)

Scores two result directories (A: before, B: after) under leave-one-group-out, each with its own
thresholds chosen on the other groups, then resamples the files with replacement (a paired
bootstrap: the same files for both) and reports the difference B − A of the normalised score:
its value on the files as they are, the median and the 5–95 % interval over the resamples, and
the share of resamples in which B scores higher. The thresholds stay as chosen on all the files;
only which files count varies.

    bench/nab_paired.py SCORER DATA LABELS DIR_A DIR_B [RESAMPLES]
"""
import importlib.util
import random
import sys


def load_scorer(path):
    spec = importlib.util.spec_from_file_location("nab_score", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Args:
    def __init__(self, data, labels, results):
        self.data, self.labels, self.results, self.only = data, labels, results, None


def per_file_logo(nab, data, labels, results):
    """Per file: (raw score under its group's leave-one-out threshold, null, perfect)."""
    files = nab.load_corpus(Args(data, labels, results))
    w = nab.PROFILES["standard"]
    out = {}
    for g in sorted({nab.group_of(f) for f in files}):
        test = [f for f in files if nab.group_of(f) == g]
        train = [f for f in files if nab.group_of(f) != g]
        thr = nab.sweep(train, ["standard"])[0]["standard"]
        for f, r in zip(test, nab.evaluate(test, thr, w)):
            # The corpus' null detector flags nothing (every window missed): per file, that.
            out[f.name] = (r["score"], -w["fnWeight"] * len(f.scorable_windows()),
                           w["tpWeight"] * len(f.windows))
    return out


def normalised(rows):
    raw = sum(r[0] for r in rows)
    null = sum(r[1] for r in rows)
    perfect = sum(r[2] for r in rows)
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    scorer, data, labels, dir_a, dir_b = sys.argv[1:6]
    n = int(sys.argv[6]) if len(sys.argv) > 6 else 2000
    nab = load_scorer(scorer)
    a = per_file_logo(nab, data, labels, dir_a)
    b = per_file_logo(nab, data, labels, dir_b)
    names = sorted(a)
    rng = random.Random(17)
    levels = {"A": [], "B": [], "B - A": []}
    for _ in range(n):
        pick = [rng.choice(names) for _ in names]
        sa = normalised([a[k] for k in pick])
        sb = normalised([b[k] for k in pick])
        levels["A"].append(sa)
        levels["B"].append(sb)
        levels["B - A"].append(sb - sa)
    whole = {"A": normalised([a[k] for k in names]), "B": normalised([b[k] for k in names])}
    whole["B - A"] = whole["B"] - whole["A"]
    for name, xs in levels.items():
        xs.sort()
        q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
        sign = "+" if name == "B - A" else ""
        print(f"{name:5}: {whole[name]:{sign}.2f} on the {len(names)} files; over {n} resamples "
              f"median {q(0.5):{sign}.2f}, 5-95 % [{q(0.05):{sign}.2f}, {q(0.95):{sign}.2f}]")
    better = sum(d > 0 for d in levels["B - A"]) / n
    print(f"B higher in {100 * better:.0f} % of the resamples")


if __name__ == "__main__":
    main()
