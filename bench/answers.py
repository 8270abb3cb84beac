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
import os
import platform
import re
import shutil
import signal
import subprocess
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
from bench import escape  # noqa: E402  (the SVG text escaping make bench uses)

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
        out.append(f'<text x="{width - right + 32}" y="{ly + 1}">{escape(s)}</text>')
    out.append("</svg>\n")
    return "\n".join(out)


def fig(r, key="rps"):
    if r is None:
        return "(failed)"
    return f"{r[key]:.0f} req/s" if key == "rps" else f"{r[key]:.2f} ms"


def answers(results, pool, ns, cs, threads, pool_n, pool_size):
    """The four answers, each citing the measured figures it explains."""
    n = max(ns)
    lo_c, hi_c = min(cs), max(cs)
    get = lambda s, c, nn=n: results[s].get((nn, c))
    basic_lo, basic_hi = get("httpserver", lo_c), get("httpserver", hi_c)
    text = []

    text.append("### 1. The basic server as n and c grow\n")
    text.append(
        f"httpserver serves one connection at a time, so concurrency adds no throughput: at n = {n} it "
        f"served {fig(basic_lo)} at c = {lo_c} and {fig(basic_hi)} at c = {hi_c}. What grows is the "
        f"wait. ab's mean time per request went from {fig(basic_lo, 'mean_ms')} at c = {lo_c} to "
        f"{fig(basic_hi, 'mean_ms')} at c = {hi_c}: each of the c clients waits behind the others in the "
        "kernel's listen queue. That is Little's law: the time per request is about c divided by the "
        "throughput. Growing n only makes the run longer. The averages move little between "
        f"n = {min(ns)} and n = {n}, apart from the noise of short runs. Nothing fails, because the "
        "listen backlog (1024) holds every waiting client. A slow client, though, would hold up every "
        "client behind it (tests/modes.rs shows this).\n")

    fork_hi, thread_hi = get("forkserver", hi_c), get("threadserver", hi_c)
    fork_lo = get("forkserver", lo_c)
    text.append("### 2. forkserver: the cost of fork\n")
    per_conn = f"{1e6 / fork_hi['rps']:.0f} µs" if fork_hi else "(failed)"
    text.append(
        f"forkserver runs each connection in a new process. At n = {n}, c = {hi_c} it served "
        f"{fig(fork_hi)}, against threadserver's {fig(thread_hi)}. That is about {per_conn} of "
        "machine time per connection, most of it the fork itself (copying the page tables of a "
        "multi-threaded parent), the child's exit, and the reaper's waitpid. At c = "
        f"{lo_c} it served {fig(fork_lo)}: with one client at a time, every request pays that whole cost "
        "in its latency. With more clients, the two cores overlap forks with serving. Each child is "
        "isolated, so a crash or leak in one connection cannot affect the others. That isolation is "
        "what the process per connection buys.\n")

    text.append("### 3. threadserver: creating threads against reusing them\n")
    pool_hi = get("poolserver", hi_c)
    text.append(
        f"threadserver gives each connection a thread of its own. At n = {n} it served {fig(get('threadserver', lo_c))} "
        f"at c = {lo_c} and {fig(thread_hi)} at c = {hi_c}, against poolserver ({pool_size} workers) at "
        f"{fig(get('poolserver', lo_c))} and {fig(pool_hi)}. A thread costs much less than a process (no "
        "page tables to copy, no exit to reap), but creating one is still a clone(), a stack mapping, "
        "and a first wake-up on another core. So threadserver takes its threads from a cache: a "
        "thread that finishes waits up to a second for the next connection. Under this load almost "
        "every connection reuses a thread, which is why it stays level with the pool. It differs "
        "from the pool in what happens at the limits. It starts as many threads as there are clients "
        "(up to --max-connections), so c = 500 means up to 500 threads, where the pool's bound is "
        "its size.\n")

    text.append(f"### 4. poolserver: pool size against c (n = {pool_n})\n")
    one = pool.get(min(threads), {})
    big = pool.get(max(threads), {})
    mid = [t for t in threads if t >= (os.cpu_count() or 2)]
    mid_t = mid[0] if mid else max(threads)
    text.append(
        f"With {min(threads)} worker(s), poolserver is the basic server behind a queue. At c = {hi_c} it "
        f"served {fig(one.get((pool_n, hi_c)))} with a mean time per request of "
        f"{fig(one.get((pool_n, hi_c)), 'mean_ms')}, since every request waits for the one worker. With "
        f"{mid_t} workers (at least one per core of this {os.cpu_count()}-core machine) it served "
        f"{fig(pool.get(mid_t, {}).get((pool_n, hi_c)))}, and with {max(threads)} workers "
        f"{fig(big.get((pool_n, hi_c)))}. A request for a small file is short and uses the CPU. Once there "
        "are enough workers to keep both cores busy and to cover the moments one of them blocks, "
        "more workers only add threads that wait their turn for a core. Requests then queue in the "
        "scheduler rather than in the work queue. More workers than c never help: the extra ones "
        "sleep in wq_pop. More workers help most when requests block (slow clients, or a slow disk). "
        "A pool as large as c then behaves like threadserver, with all its threads made in advance.\n")
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
        "mean time per request (ms, ab's \"mean\", which counts each client's wait), the 99th "
        "percentile of the total time (ms), and failed requests. ab runs on the same machine, so "
        "it competes with the server for the cores. Runs with c > n are left out.\n",
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
