#!/usr/bin/env python3
"""Our handlespace against rsplib 3.4's, same workload, alternating processes.

`make bench-hs-compare` (or `python3 benches/rsplib-hs/compare.py [options]`). Builds the C
harness (`harness.c`, which loads Debian's librsphsmgt.so.3 with dlopen) with `cc` and our
handlespace bench with cargo, then runs them in turn, N paired runs, one process per side and
size (the order within a pair alternates from run to run), and prints per layout, size,
policy and operation the median rate of each side and the ratio ours / rsplib.

Each process repeats the workload REPS times (10 at 10^3, 3 at 10^4, 1 above; both sides the
same), after one repetition that is not counted up to 10^4, and reports the median of its
repetitions; the table gives the median over the N
processes of each side. Skips (exit status 0, one message) when librsphsmgt.so.3 or a C
compiler is missing: the comparison needs Debian's rsplib 3.4 (`apt-get install librsplib3`
or the package that ships librsphsmgt.so.3), and it is never part of `make test`.

Options: --runs N (5), --sizes 1000,10000,100000,1000000, --layouts single,pools,
--policies RR,WRR,RAND,WRAND,LU,... (short names of benches/handlespace.rs),
--lib PATH (librsphsmgt.so.3), --json FILE (raw per-process figures), --bench EXE (a built
handlespace bench, e.g. a copy of the code before a change).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OPS = ["reg", "rereg", "hr", "dereg"]
OP_NAMES = {"reg": "reg", "rereg": "rereg", "hr": "HR(3)", "dereg": "dereg"}
SKIP = 77


def skip(why):
    print(f"bench-hs-compare: skipped: {why}")
    sys.exit(0)


def find_lib(given):
    if given:
        return given if os.path.exists(given) else None
    for d in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
              "/usr/lib", "/usr/local/lib"]:
        p = os.path.join(d, "librsphsmgt.so.3")
        if os.path.exists(p):
            return p
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return None
    for line in out.splitlines():
        if "librsphsmgt.so.3 " in line and "=>" in line:
            return line.split("=>")[1].strip()
    return None


def build_harness():
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc):
        skip(f"no C compiler ({cc})")
    out = os.path.join(ROOT, "build", "rsplib-hs-harness")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run([cc, "-O2", "-Wall", "-o", out, os.path.join(HERE, "harness.c"), "-ldl"],
                   check=True)
    return out


def build_bench():
    res = subprocess.run(
        ["cargo", "bench", "--bench", "handlespace", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True)
    exe = None
    for line in res.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if (msg.get("reason") == "compiler-artifact" and msg.get("executable")
                and msg["target"]["name"] == "handlespace"):
            exe = msg["executable"]
    if not exe:
        sys.exit("bench-hs-compare: cannot find the handlespace bench executable")
    return exe


def parse(text):
    """{(layout, n, policy): {op: rate, 'bpe': bytes}} from `HS ...` lines."""
    rows = {}
    for line in text.splitlines():
        if not line.startswith("HS "):
            continue
        kv = dict(f.split("=", 1) for f in line.split()[1:])
        key = (kv["layout"], int(kv["n"]), kv["policy"])
        rows[key] = {op: float(kv[op]) for op in OPS}
        rows[key]["bpe"] = float(kv["bpe"])
    return rows


def reps_for(n):
    return 10 if n <= 1000 else 3 if n <= 10000 else 1


def warmup_for(n):
    # One discarded repetition first where a repetition is short: it pays for the first
    # touches of fresh memory (mimalloc maps huge pages), which otherwise land in a timed loop.
    return 1 if n <= 10000 else 0


def run_rsplib(harness, lib, n, layouts, policies):
    res = subprocess.run([harness, "-l", lib, "-s", str(n), "-L", ",".join(layouts),
                          "-p", ",".join(policies), "-r", str(reps_for(n)), "-w", str(warmup_for(n))],
                         capture_output=True, text=True)
    if res.returncode == SKIP:
        skip(res.stderr.strip())
    if res.returncode != 0:
        sys.exit(f"bench-hs-compare: harness failed: {res.stderr.strip()}")
    return parse(res.stdout)


def run_ours(bench, n, layouts, policies):
    env = dict(os.environ, HS_BENCH_MACHINE="1", HS_BENCH_MIN=str(n), HS_BENCH_MAX=str(n),
               HS_BENCH_POLICY=",".join(policies), HS_BENCH_REPS=str(reps_for(n)),
               HS_BENCH_WARMUP=str(warmup_for(n)))
    if len(layouts) == 1:
        env["HS_BENCH_LAYOUT"] = layouts[0]
    res = subprocess.run([bench, "--bench"], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"bench-hs-compare: our bench failed: {res.stderr.strip()[-2000:]}")
    return parse(res.stdout)


def rate(r):
    return f"{r / 1e6:.2f}M" if r >= 1e6 else f"{r / 1e3:.0f}k"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--layouts", default="single,pools")
    ap.add_argument("--policies", default="RR,WRR,RAND,WRAND,LU")
    ap.add_argument("--lib")
    ap.add_argument("--json")
    ap.add_argument("--bench", help="a built handlespace bench executable (default: cargo's)")
    a = ap.parse_args()
    lib = find_lib(a.lib)
    if not lib:
        skip("librsphsmgt.so.3 (Debian's rsplib 3.4 handlespace library) is not installed")
    harness = build_harness()
    bench = a.bench or build_bench()
    sizes = [int(s) for s in a.sizes.split(",")]
    layouts = a.layouts.split(",")
    policies = a.policies.split(",")
    samples = {"ours": [], "rsplib": []}
    for run in range(a.runs):
        for n in sizes:
            sides = ["rsplib", "ours"] if run % 2 == 0 else ["ours", "rsplib"]
            for side in sides:
                print(f"run {run + 1}/{a.runs}: {side} at {n} PEs", file=sys.stderr, flush=True)
                if side == "rsplib":
                    samples[side].append(run_rsplib(harness, lib, n, layouts, policies))
                else:
                    samples[side].append(run_ours(bench, n, layouts, policies))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({side: [{"|".join(map(str, k)): v for k, v in s.items()}
                              for s in runs] for side, runs in samples.items()}, f)

    def med(side, key, op):
        vals = [s[key][op] for s in samples[side] if key in s]
        return statistics.median(vals) if vals else float("nan")

    print(f"# ours / rsplib 3.4.4 (librsphsmgt, SimpleRedBlackTree): medians of {a.runs} "
          f"alternating paired runs; rates in operations/s")
    head = " ".join(f"{OP_NAMES[op]:>22}" for op in OPS)
    for layout in layouts:
        print(f"\n## layout {layout}" + (" (pools of 100)" if layout == "pools" else " (one pool)"))
        print(f"{'PEs':>8} {'policy':>8} {head}  {'B/PE ours/rsplib':>17}")
        for n in sizes:
            for p in policies:
                key = (layout, n, p)
                cells = []
                for op in OPS:
                    o, r = med("ours", key, op), med("rsplib", key, op)
                    cells.append(f"{rate(o):>7} {rate(r):>7} {o / r:>5.2f}x")
                bpe = f"{med('ours', key, 'bpe'):.0f}/{med('rsplib', key, 'bpe'):.0f}"
                print(f"{n:>8} {p:>8} {' '.join(cells)}  {bpe:>17}")
    print("\ncells: ours rsplib ratio (ours / rsplib); B/PE: ours = requested bytes without the "
          "address list, rsplib = malloc'd chunk bytes including its copied transport block")


if __name__ == "__main__":
    main()
