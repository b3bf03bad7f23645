#!/usr/bin/env python3
"""Prints the ratio table of benches/overhead.rs from criterion's results
(target/criterion/*/*/new/estimates.json): medians, and each form against the
bare pipeline and the constant-attribute floor of the same run."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def median(group, bench):
    for name in (bench, bench.replace("/", "_")):
        p = root / group / name / "new" / "estimates.json"
        if p.exists():
            return json.loads(p.read_text())["median"]["point_estimate"]
    return None


print("| bench | attrs | median ns | vs bare | vs const wrapper |")
print("|---|---|---|---|---|")
for vec in ("full", "spare"):
    bare = median("span", f"bare/{vec}")
    const = median("span", f"const_wrapper/{vec}")
    for form in ("bare", "const_wrapper", "wrapper", "standalone"):
        m = median("span", f"{form}/{vec}")
        if m is None or bare is None or const is None:
            continue
        print(f"| span/{form} | {vec} | {m:.1f} | {m / bare:.3f}x | {m / const:.3f}x |")
lb, lw = median("log", "bare"), median("log", "wrapper")
if lb and lw:
    print(f"| log/bare | 2 | {lb:.1f} | 1.000x | |")
    print(f"| log/wrapper | 2 | {lw:.1f} | {lw / lb:.3f}x | |")
cs, cf = median("contention", "steady"), median("contention", "flipping")
if cs and cf:
    print(f"\ncontention (2 threads, ns per span): steady {cs:.1f}, "
          f"flipping pause/resume every ms {cf:.1f}: throughput ratio {cs / cf:.3f}")
