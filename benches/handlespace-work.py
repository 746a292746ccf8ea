#!/usr/bin/env python3
"""Work per handlespace operation at 10^3 and 10^6 PEs, counted by callgrind.

`make bench-work` (or `python3 benches/handlespace-work.py [BENCH_BINARY]`; without an
argument it builds the bench with cargo). Needs valgrind; takes about 15 minutes.

Time per operation on this machine mixes two things: the work an operation does (which the
data structures decide: O(1), O(log n)) and how long its memory accesses wait (which the cache
hierarchy decides: a structure of 10^6 PEs does not fit in any cache). The handlespace bench
measures their sum, and its run-to-run noise on a shared VM is ±25 %. This script measures
the first alone, exactly and reproducibly: it runs the handlespace bench once per layout,
policy and size under valgrind's callgrind and reads the inclusive cost of the three entry
points the bench calls (`register_until` for registrations and re-registrations,
`select_into` for handle resolutions, `deregister`), divided by their number of calls:

* Ir — instructions executed per operation;
* D1 — simulated first-level data-cache misses per operation (reads + writes);
* LL — simulated last-level misses per operation, with a 16 MiB 16-way last level (a
  generous share of this machine's L3: its dependent-load latency rises to DRAM's between
  8 and 16 MiB).

The `work` row is Ir(10^6) / Ir(10^3): the target's "within 2x", for the work. Valgrind's
counts do not depend on the machine's load, so one run is enough.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

FUNCS = {
    "reg+rereg": "Handlespace<R>::register_until",
    "HR(3)": "Handlespace<R>::select_into",
    "dereg": "Handlespace<R>::deregister",
}
POLICIES = ["RR", "WRR", "RAND", "LU"]
SIZES = [1000, 1000000]


def num(s):
    return int(s.replace(",", ""))


def profile(binary, layout, policy, n, outdir):
    """Per function: (calls, {event: inclusive count})."""
    out = os.path.join(outdir, f"cg.{layout}.{policy}.{n}")
    env = dict(
        os.environ,
        HS_BENCH_MIN=str(n),
        HS_BENCH_MAX=str(n),
        # At 10^3 a few repetitions, so that the first touch of fresh memory (compulsory
        # misses) is spread over them, as in the timed bench's best-of runs.
        HS_BENCH_REPS="5" if n < 10000 else "1",
        HS_BENCH_POLICY=policy,
        HS_BENCH_LAYOUT=layout,
    )
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--cache-sim=yes",
            "--D1=32768,8,64",
            "--I1=32768,8,64",
            "--LL=16777216,16,64",
            f"--callgrind-out-file={out}",
            binary,
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    text = subprocess.run(
        [
            "callgrind_annotate",
            "--inclusive=yes",
            "--tree=caller",
            "--threshold=100",
            "--auto=no",
            out,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # The tree lists each function's callers ("<", with their call counts) above its own
    # inclusive cost ("*"). A function is taken where the bench's main is one of its callers
    # (inlined code of other files inside it is listed under the same name, called by itself).
    events = None
    result = {}
    calls, from_main = 0, False
    for line in text.splitlines():
        if line.startswith("Events shown:"):
            events = line.split(":", 1)[1].split()
            continue
        if events is None or not line.strip():
            calls, from_main = 0, False
            continue
        mark = "<" if " < " in line else "*" if " * " in line else None
        if mark is None:
            continue
        counts, rest = line.split(f" {mark} ", 1)
        if mark == "<":
            m = re.search(r"\(([\d,]+)x\)", rest)
            calls += num(m.group(1)) if m else 0
            from_main |= "handlespace::main (" in rest
            continue
        for name, func in FUNCS.items():
            if name not in result and from_main and rest.split()[0].endswith(func):
                # Zero counts are printed as ".", shares as "(12.34%)".
                bare = re.sub(r"\([^)]*\)", " ", counts)
                values = [0 if t == "." else num(t) for t in bare.split()]
                result[name] = (calls, dict(zip(events, values)))
        calls, from_main = 0, False
    return result


def per_op(entry):
    calls, ev = entry
    return (
        ev.get("Ir", 0) / calls,
        (ev.get("D1mr", 0) + ev.get("D1mw", 0)) / calls,
        (ev.get("DLmr", 0) + ev.get("DLmw", 0)) / calls,
    )


def bench_binary():
    """Builds the handlespace bench and returns its executable."""
    out = subprocess.run(
        ["cargo", "bench", "--bench", "handlespace", "--no-run", "--message-format=json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            if msg["target"]["name"] == "handlespace":
                return msg["executable"]
    sys.exit("cargo built no handlespace bench")


def main():
    if len(sys.argv) > 2:
        sys.exit("usage: handlespace-work.py [BENCH_BINARY]")
    binary = sys.argv[1] if len(sys.argv) == 2 else bench_binary()
    cols = list(FUNCS)
    head = "".join(f" | {c:>26}" for c in cols)
    print(f"{'layout':>8} {'policy':>6} {'PEs':>9}{head}")
    print(f"{'':>8} {'':>6} {'':>9}" + f" | {'Ir':>9} {'D1':>7} {'LL':>7}" * len(cols))
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ["single", "pools"]:
            for policy in POLICIES:
                rows = {}
                for n in SIZES:
                    prof = profile(binary, layout, policy, n, tmp)
                    missing = [c for c in cols if c not in prof]
                    if missing:
                        sys.exit(f"{layout} {policy} {n}: no callgrind cost for {missing}")
                    rows[n] = [per_op(prof[c]) for c in cols]
                    cells = "".join(f" | {ir:>9.0f} {d1:>7.2f} {ll:>7.2f}" for ir, d1, ll in rows[n])
                    print(f"{layout:>8} {policy:>6} {n:>9}{cells}", flush=True)
                lo, hi = rows[SIZES[0]], rows[SIZES[-1]]
                ratio = "".join(f" | {h[0] / l[0]:>8.2f}x {'':>15}" for l, h in zip(lo, hi))
                print(f"{layout:>8} {policy:>6} {'work':>9}{ratio}", flush=True)


if __name__ == "__main__":
    main()
