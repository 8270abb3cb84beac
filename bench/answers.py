#!/usr/bin/env python3
"""make answers: the homework's Performance task, measured with ab.

Runs ApacheBench against httpserver, forkserver, threadserver and poolserver
serving www/ in files mode, over a grid of total requests (n) and concurrency
(c), and against poolserver over a range of pool sizes. Writes answers.md (the
machine, the tables, and the four answers, which cite the numbers) and
time_per_request.svg into the output directory.

Usage: bench/answers.py [--n 500,5000,20000] [--c 1,10,100,500]
                        [--threads 1,2,4,8,32,128] [--pool 8] [--out results]
                        [--bin-dir DIR]
"""
import argparse
import datetime
import html
import os
import platform
import re
import shutil
import signal
import subprocess
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)

SERVERS = ["httpserver", "forkserver", "threadserver", "poolserver"]
PAGE = "/index.html"
BIN_DIR = ROOT
COLORS = {"httpserver": "#d1495b", "forkserver": "#edae49", "threadserver": "#00798c", "poolserver": "#30638e"}


def numbers(text):
    return [int(v) for v in text.split(",") if v]


def start(exe, extra, www):
    """Starts a server on --port 0 and returns it with the port it printed."""
    argv = [os.path.join(BIN_DIR, exe), "--files", www, "--port", "0", "--quiet", *extra]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.match(r"Listening on port (\d+)\.\.\.", line)
    if not m:
        proc.kill()
        sys.exit(f"answers: {' '.join(argv)} did not start: {line!r}")
    return proc, int(m.group(1))


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ab(port, n, c):
    """One ab run: requests/s, mean time per request (ms), failed requests and
    the 99th percentile (ms), as ab reports them; None for a run that failed."""
    cmd = ["ab", "-q", "-r", "-n", str(n), "-c", str(c), f"http://127.0.0.1:{port}{PAGE}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    rps = re.search(r"Requests per second:\s+([\d.]+)", text)
    mean = re.search(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)", text)
    failed = re.search(r"Failed requests:\s+(\d+)", text)
    p99 = re.search(r"^\s*99%\s+(\d+)", text, re.M)
    if not (rps and mean and failed):
        print(f"  ab -n {n} -c {c}: {text.strip()[-200:]}", file=sys.stderr)
        return None
    return {"rps": float(rps.group(1)), "mean_ms": float(mean.group(1)),
            "failed": int(failed.group(1)), "p99_ms": int(p99.group(1)) if p99 else None}


def sweep(exe, extra, www, grid):
    proc, port = start(exe, extra, www)
    try:
        results = {}
        for n, c in grid:
            if c > n:
                continue
            results[(n, c)] = ab(port, n, c)
            r = results[(n, c)]
            shown = f"{r['rps']:.0f} req/s, {r['mean_ms']:.2f} ms, {r['failed']} failed" if r else "failed"
            print(f"  {exe} {' '.join(extra)} n={n} c={c}: {shown}", flush=True)
        return results
    finally:
        stop(proc)


def machine():
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT).stdout.strip()
        except OSError:
            return "?"
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(next(l.split()[1] for l in f if l.startswith("MemTotal")))
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": cmd(["git", "describe", "--always", "--dirty"]) or "?",
        "cpu": f"{os.cpu_count()} x {model}",
        "memory": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "ab": (cmd(["ab", "-V"]).splitlines() or ["?"])[0].removeprefix("This is "),
    }


def cell(r, key, fmt):
    if r is None:
        return "failed"
    v = r[key]
    return "—" if v is None else fmt.format(v)


def table(rows, label, results, ns, cs):
    """A markdown table: one row per (label, n), the four figures per c."""
    out = [f"| {label} | n | " + " | ".join(f"c={c}" for c in cs) + " |",
           "|---|---:|" + "---:|" * len(cs)]
    for name in rows:
        for n in ns:
            cells = []
            for c in cs:
                r = results[name].get((n, c))
                if (n, c) not in results[name]:
                    cells.append("")
                    continue
                cells.append(f"{cell(r, 'rps', '{:.0f}')} req/s<br>{cell(r, 'mean_ms', '{:.2f}')} ms"
                             f"<br>p99 {cell(r, 'p99_ms', '{} ms')}<br>{cell(r, 'failed', '{} failed')}")
            out.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def svg(results, n, cs):
    """Mean time per request against concurrency at `n` requests, one line per
    server; both axes logarithmic."""
    import math
    width, height, left, right, top, bottom = 720, 440, 70, 170, 40, 50
    points = {s: [(c, results[s].get((n, c))) for c in cs] for s in SERVERS}
    values = [r["mean_ms"] for pts in points.values() for _, r in pts if r and r["mean_ms"] > 0]
    lo, hi = min(values or [0.01]), max(values or [1])
    lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    hi_e = max(hi_e, lo_e + 1)
    cx = {c: left + i * (width - left - right) / max(1, len(cs) - 1) for i, c in enumerate(cs)}

    def y(v):
        return top + (hi_e - math.log10(v)) / (hi_e - lo_e) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14" font-weight="bold">'
           f'Mean time per request (ms, log scale) against concurrency c, n = {n}</text>']
    for e in range(lo_e, hi_e + 1):
        yy = y(10 ** e)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{width - right}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{10 ** e:g}</text>')
    for c, xx in cx.items():
        out.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{height - bottom}" stroke="#eee"/>')
        out.append(f'<text x="{xx:.1f}" y="{height - bottom + 18}" text-anchor="middle">c={c}</text>')
    for i, s in enumerate(SERVERS):
        pts = [(cx[c], y(r["mean_ms"])) for c, r in points[s] if r and r["mean_ms"] > 0]
        if pts:
            path = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS[s]}" stroke-width="2"/>')
            for x, yy in pts:
                out.append(f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="3" fill="{COLORS[s]}"/>')
        ly = top + 10 + i * 20
        out.append(f'<rect x="{width - right + 15}" y="{ly - 9}" width="12" height="12" fill="{COLORS[s]}"/>')
        out.append(f'<text x="{width - right + 32}" y="{ly + 1}">{html.escape(s)}</text>')
    out.append("</svg>\n")
    return "\n".join(out)


def fig(r, key="rps"):
    if r is None:
        return "(failed)"
    return f"{r[key]:.0f} req/s" if key == "rps" else f"{r[key]:.2f} ms"


def compare(a, b):
    """How throughput `a` compares with `b`, in words (within 10%: level)."""
    if a is None or b is None:
        return "(failed)"
    ratio = a["rps"] / b["rps"]
    if ratio > 1.1:
        return f"{ratio:.2f}× as many requests/s as"
    if ratio < 0.9:
        return f"only {ratio:.2f}× the requests/s of"
    return "about as many requests/s as"


class Grid:
    """What the answers read their figures from: the main grid's results at
    its largest n, the low, middle and high concurrency, and the pool sweep."""

    def __init__(self, results, pool, ns, cs, threads, pool_n, pool_size):
        self.results, self.pool, self.ns, self.cs = results, pool, ns, cs
        self.threads, self.pool_n, self.pool_size = threads, pool_n, pool_size
        self.n = max(ns)
        self.lo_c, self.hi_c = min(cs), max(cs)
        self.mid_c = cs[1] if len(cs) > 2 else self.hi_c

    def get(self, server, c, n=None):
        return self.results[server].get((n or self.n, c))

    def at(self, threads, c):
        return self.pool.get(threads, {}).get((self.pool_n, c))


def ok(rs):
    return all(r is not None for r in rs)


def answer_basic(g):
    """1. The basic server as n and c grow."""
    n, lo_c, mid_c, hi_c = g.n, g.lo_c, g.mid_c, g.hi_c
    basic = {c: g.get("httpserver", c) for c in g.cs}
    if not ok(basic.values()):
        return ["Some httpserver runs failed; see the table.\n"]
    busy = [basic[c]["rps"] for c in g.cs if c >= mid_c]
    rise = "rises" if min(busy) > 1.1 * basic[lo_c]["rps"] else "stays"
    best = max(SERVERS, key=lambda s: (g.get(s, hi_c) or {"rps": 0})["rps"])
    rank = ("the basic server served the most of the four" if best == "httpserver" else
            f"the basic server served {compare(basic[hi_c], g.get(best, hi_c))} {best}, the fastest")
    return [
        f"httpserver serves one connection at a time. At n = {n} it served {fig(basic[lo_c])} at "
        f"c = {lo_c}, and between {min(busy):.0f} and {max(busy):.0f} req/s at c = {mid_c} to {hi_c}. "
        f"So throughput {rise} from c = {lo_c} to c = {mid_c}, and then stops growing. At c = 1 the "
        "server is idle whenever ab reads a response and opens its next connection. With more "
        "clients, the next connection is always waiting in the listen queue (the kernel has "
        "already completed its handshake and holds its request), so the one thread never waits, while ab runs on the "
        "other core. Beyond that point nothing can help a server that serves one request at a time.\n",
        f"The time per request grows instead: ab's mean went from {fig(basic[lo_c], 'mean_ms')} at "
        f"c = {lo_c} to {fig(basic[mid_c], 'mean_ms')} at c = {mid_c} and {fig(basic[hi_c], 'mean_ms')} "
        f"at c = {hi_c}. This is Little's law: each client waits behind the c − 1 "
        f"others, so the time per request is c divided by the throughput ({hi_c} / "
        f"{basic[hi_c]['rps']:.0f} req/s = {1000 * hi_c / basic[hi_c]['rps']:.1f} ms). Growing n only "
        f"makes the run longer: the figures at n = {min(g.ns)} and n = {n} differ by no more than the "
        "noise of short runs. No request failed, because the listen backlog (1024) holds every "
        "waiting client.\n",
        f"For one small file on this {os.cpu_count()}-core machine, at c = {hi_c}, {rank}. It never "
        "hands a connection to another thread or process, and each hand-off costs a wake-up. Its "
        "weakness is not speed but waiting: one slow client holds up every client behind it "
        "(tests/modes.rs shows this).\n",
    ]


def answer_fork(g):
    """2. forkserver: the cost of fork."""
    lo_c, hi_c = g.lo_c, g.hi_c
    fork_lo, fork_hi, thread_hi = g.get("forkserver", lo_c), g.get("forkserver", hi_c), g.get("threadserver", hi_c)
    if not ok([fork_lo, fork_hi, thread_hi]):
        return ["Some forkserver runs failed; see the table.\n"]
    return [
        f"forkserver runs each connection in a new process. At n = {g.n} it served {fig(fork_lo)} at "
        f"c = {lo_c} and {fig(fork_hi)} at c = {hi_c}: {compare(fork_hi, thread_hi)} threadserver "
        f"({fig(thread_hi)}) and {compare(fork_hi, g.get('httpserver', hi_c))} httpserver. Saturated, "
        f"that is about {1e6 / fork_hi['rps']:.0f} µs of the machine per connection, where "
        f"threadserver needs {1e6 / thread_hi['rps']:.0f} µs. The difference is the fork itself "
        "(copying the page tables of a multi-threaded parent and marking its memory copy-on-write), "
        "the copy-on-write faults of the child's first writes, its exit, and the reaper's "
        f"waitpid. At c = {lo_c} every request waits for that whole cost "
        f"({fig(fork_lo, 'mean_ms')} per request against httpserver's "
        f"{fig(g.get('httpserver', lo_c), 'mean_ms')}). With more clients the two cores overlap it with "
        "serving. What the process per connection buys is isolation: a crash or a leak in one "
        "connection cannot touch another.\n",
    ]


def answer_thread(g):
    """3. threadserver: creating threads against reusing them."""
    lo_c, hi_c = g.lo_c, g.hi_c
    thread_lo, thread_hi = g.get("threadserver", lo_c), g.get("threadserver", hi_c)
    pool_lo, pool_hi, fork_hi = g.get("poolserver", lo_c), g.get("poolserver", hi_c), g.get("forkserver", hi_c)
    if not ok([thread_lo, thread_hi, pool_lo, pool_hi]):
        return ["Some threadserver or poolserver runs failed; see the table.\n"]
    text = [
        f"threadserver gives each connection a thread of its own. At n = {g.n} it served "
        f"{fig(thread_lo)} at c = {lo_c} and {fig(thread_hi)} at c = {hi_c}. That is "
        f"{compare(thread_hi, fork_hi)} forkserver, since a thread needs no page tables copied "
        f"and no exit reaped. It is {compare(thread_hi, pool_hi)} poolserver with {g.pool_size} "
        f"workers ({fig(pool_hi)}), and {compare(thread_hi, g.get('httpserver', hi_c))} httpserver. "
        "Creating a thread still costs a clone(), a stack mapping and a first wake-up on another "
        "core, so threadserver takes its threads from a cache. A thread that finishes waits up to "
        "a second for the next connection, and under this load almost every connection reuses "
        "one. What remains is the hand-off: the accept loop wakes another thread for every "
        "connection, as poolserver's does, and httpserver's does not. Where threadserver and the "
        "pool differ is at the limits. threadserver runs as many threads as there are clients (up "
        f"to --max-connections), so c = {hi_c} means up to {hi_c} threads. The pool never runs more "
        "than its size, and queues the rest.\n",
    ]
    big_pool = g.at(max(g.threads), hi_c) if g.pool_n == g.n else None
    if big_pool is not None and thread_hi["rps"] < 0.9 * pool_hi["rps"] and big_pool["rps"] < 0.9 * pool_hi["rps"]:
        text.append(
            f"The pool shows where threadserver's gap comes from: with {max(g.threads)} workers it "
            f"served {fig(big_pool)} at c = {hi_c}, {compare(big_pool, pool_hi)} the pool of {g.pool_size}. "
            f"Many threads taking turns on {os.cpu_count()} cores make every request pay for more "
            "switches between threads, and each switch evicts the last one's data from the caches.\n")
    return text


def answer_pool(g):
    """4. poolserver: pool size against c."""
    lo_c, hi_c = g.lo_c, g.hi_c
    few, many = min(g.threads), max(g.threads)
    if not ok([g.at(t, hi_c) for t in g.threads] + [g.at(t, lo_c) for t in g.threads]):
        return ["Some poolserver runs failed; see the table.\n"]
    row = ", ".join(f"{t}: {g.at(t, hi_c)['rps']:.0f}" for t in g.threads)
    return [
        f"At c = {hi_c}, requests/s by pool size were {row}. With {few} worker(s) poolserver is the "
        f"basic server behind a queue, and it served {compare(g.at(few, hi_c), g.at(many, hi_c))} "
        f"the pool of {many} ({fig(g.at(few, hi_c))} against {fig(g.at(many, hi_c))}). " + at_one_client(g, few, many),
        "A request for a small file is short and never blocks: it needs the CPU and nothing else. "
        f"This machine has {os.cpu_count()} cores, and ab uses one of them, so one worker already "
        "keeps the server's share busy. More workers add no CPU. They add threads that wait their "
        "turn for a core, and each connection still goes through the queue to one of them. With "
        f"more workers than clients (c = {lo_c}), the extra ones just sleep in wq_pop. The pool's size "
        "matters when requests block: slow clients, a slow disk, or a slow upstream in proxy mode. "
        "Then a pool smaller than c leaves clients waiting in the queue behind blocked workers, and "
        "a pool as large as c behaves like threadserver with all its threads made in advance.\n",
    ]


def at_one_client(g, few, many):
    """The pool sizes at the lowest c, worded from the figures."""
    lo, one, all_ = g.lo_c, g.at(few, g.lo_c), g.at(many, g.lo_c)
    if 0.9 <= all_["rps"] / one["rps"] <= 1.1:
        return (f"At c = {lo} the pool size cannot matter, since one worker at a time has work: "
                f"{fig(one)} with {few} and {fig(all_)} with {many}.\n")
    return (f"At c = {lo}, where one worker at a time has work, the pool of {many} served "
            f"{compare(all_, one)} the pool of {few} ({fig(all_)} against {fig(one)}). The size does "
            "no work of its own, but the queue wakes the worker that has slept longest, and among "
            f"{many} that one's stack and data have left the caches; with {few}, it is the same warm "
            "thread every time.\n")


def answers(results, pool, ns, cs, threads, pool_n, pool_size):
    """The four answers. Each cites the measured figures, and each claim
    that depends on them is worded from them."""
    g = Grid(results, pool, ns, cs, threads, pool_n, pool_size)
    text = []
    for title, answer in [
        ("1. The basic server as n and c grow", answer_basic),
        ("2. forkserver: the cost of fork", answer_fork),
        ("3. threadserver: creating threads against reusing them", answer_thread),
        (f"4. poolserver: pool size against c (n = {pool_n})", answer_pool),
    ]:
        text.append(f"### {title}\n")
        text += answer(g)
    return "\n".join(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=numbers, default=[500, 5000, 20000], help="request totals")
    parser.add_argument("--c", type=numbers, default=[1, 10, 100, 500], help="concurrency levels")
    parser.add_argument("--threads", type=numbers, default=[1, 2, 4, 8, 32, 128], help="poolserver pool sizes")
    parser.add_argument("--pool", type=int, default=8, help="poolserver's pool size in the main grid")
    parser.add_argument("--out", default=os.path.join(ROOT, "results"), help="where answers.md goes")
    parser.add_argument("--bin-dir", default=ROOT, help="where the four servers are (default: the top of the tree)")
    args = parser.parse_args()
    global BIN_DIR
    BIN_DIR = args.bin_dir
    if shutil.which("ab") is None:
        sys.exit("answers: ab is missing. Install it with:\n  apt-get install -y apache2-utils")
    for exe in SERVERS:
        if not os.access(os.path.join(BIN_DIR, exe), os.X_OK):
            sys.exit(f"answers: ./{exe} is missing; run make first")
    www = os.path.join(ROOT, "www")
    ns, cs, threads = sorted(args.n), sorted(args.c), sorted(args.threads)
    grid = [(n, c) for n in ns for c in cs]
    about = machine()
    results = {}
    for exe in SERVERS:
        extra = ["--num-threads", str(args.pool)] if exe == "poolserver" else []
        results[exe] = sweep(exe, extra, www, grid)
    pool_n = max(ns)
    pool = {t: sweep("poolserver", ["--num-threads", str(t)], www, [(pool_n, c) for c in cs]) for t in threads}

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "time_per_request.svg"), "w") as f:
        f.write(svg(results, max(ns), cs))
    pool_results = {f"poolserver --num-threads {t}": pool[t] for t in threads}
    doc = [
        "# Performance: the four servers under ab\n",
        f"Written by `make answers` (bench/answers.py) on {about['date']}, at commit `{about['commit']}`.",
        f"Machine: {about['cpu']}, {about['memory']}, Linux {about['kernel']}; {about['ab']}.\n",
        f"Each cell is one run of `ab -q -r -n N -c C http://127.0.0.1:PORT{PAGE}` against the server "
        "serving www/ in files mode with `--quiet`. The figures are ab's own: requests per second, the "
        "mean time per request (ms; ab's \"mean\", which is c × the run's wall time / n, and so "
        "counts each client's wait), the 99th percentile of ab's per-request times (ms), and failed "
        "requests. ab runs on the same machine, so it competes with the server for the cores. Runs "
        "with c > n are left out.\n",
        "![mean time per request against c](time_per_request.svg)\n",
        "## The four servers\n",
        f"poolserver runs with `--num-threads {args.pool}` here.\n",
        table(SERVERS, "server", results, ns, cs) + "\n",
        "## poolserver's pool size\n",
        table(list(pool_results), "pool", pool_results, [pool_n], cs) + "\n",
        "## Answers\n",
        answers(results, pool, ns, cs, threads, pool_n, args.pool),
    ]
    with open(os.path.join(args.out, "answers.md"), "w") as f:
        f.write("\n".join(doc))
    print(f"answers: wrote {os.path.join(args.out, 'answers.md')}")


if __name__ == "__main__":
    main()
