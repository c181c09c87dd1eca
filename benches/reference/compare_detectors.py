"""`just bench-vs-sklearn`: eidn's criterion detectors bench and scikit-learn on the same
data, back to back, with the time ratios (eidn / scikit-learn: below 1 = eidn faster).

    pip install scikit-learn
    python3 benches/reference/compare_detectors.py
"""
import json
import os
import re
import subprocess
import sys


def main():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "detectors", "--", "--output-format", "bencher"],
        check=True, capture_output=True, text=True).stdout
    eidn = {}
    for m in re.finditer(r"test detectors/(\w+?)_(fit|score)/(\S+) \.\.\. bench:\s+([\d,]+) ns/iter", out):
        eidn[(m.group(1), m.group(3), m.group(2))] = float(m.group(4).replace(",", "")) / 1e9
    if not eidn:
        sys.exit(f"could not read the criterion output:\n{out}")
    here = os.path.dirname(os.path.abspath(__file__))
    sk_out = subprocess.run([sys.executable, os.path.join(here, "detectors_sklearn.py")],
                            check=True, capture_output=True, text=True).stdout
    print("| detector | data | eidn fit s | sklearn fit s | fit ratio | eidn score s | sklearn score s | score ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for line in sk_out.splitlines():
        r = json.loads(line)
        key = (r["detector"], r["shape"])
        ef, es = eidn.get(key + ("fit",)), eidn.get(key + ("score",))
        if ef is None or es is None:
            continue
        print(f"| {r['detector']} | {r['shape']} | {ef:.4f} | {r['fit_s']:.4f} | {ef / r['fit_s']:.2f} "
              f"| {es:.4f} | {r['score_s']:.4f} | {es / r['score_s']:.2f} |")


if __name__ == "__main__":
    main()
