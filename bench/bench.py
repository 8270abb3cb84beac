#!/usr/bin/env python3
"""make bench: httpserver side by side with HAProxy, nginx, socat, and two
relays of the homework's own kind: a C relay as the homework describes it,
and tokio's copy_bidirectional (both under bench/peers/, built by make).

Everything runs on 127.0.0.1 against one nginx origin. Each metric is taken
for every target in turn, over several interleaved rounds, and the median is
reported. Results go to bench/RESULTS.md and bench/ratios.svg.

Usage: bench/bench.py [--rounds N]
"""
import argparse
import datetime
import html
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
HOST = "127.0.0.1"

# Tool -> Debian package. The stream module is a file, checked separately.
TOOLS = {"nginx": "nginx-light", "haproxy": "haproxy", "socat": "socat", "wrk": "wrk",
         "ab": "apache2-utils", "curl": "curl"}
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

ORIGIN_PORT = 9100
PROXIES = [  # name, port
    ("direct", ORIGIN_PORT),
    ("haproxy", 9101),
    ("nginx-stream", 9102),
    ("socat", 9103),
    ("c-relay", 9107),
    ("c-relay-nagle", 9109),
    ("tokio-relay", 9108),
    ("threadserver", 9104),
    ("poolserver", 9105),
]
PEERS = ["haproxy", "nginx-stream", "socat"]
# The relays of the homework's own kind, each compared with on its own;
# c-relay-nagle is the same C relay with TCP_NODELAY left off.
DESIGN_PEERS = ["c-relay", "tokio-relay"]
C_RELAY = os.path.join(BENCH, "peers", "c-relay", "c-relay")
TOKIO_RELAY = os.path.join(BENCH, "peers", "tokio-relay", "target", "release", "tokio-relay")
OURS = ["threadserver", "poolserver"]
FILES_TARGETS = [  # name, port
    ("httpserver", 9110),
    ("forkserver", 9111),
    ("threadserver", 9112),
    ("poolserver-4", 9113),
    ("poolserver-32", 9114),
    ("nginx", 9115),
    ("python-http.server", 9116),
]
IDLE_CONNS = 2000
# Connection lives measured at once, and how long each idles after its request.
LIFE_CONNS = 3000
LIFE_IDLE_SECS = 3
LIFE_TARGETS = ["c-relay", "haproxy", "tokio-relay", "threadserver", "poolserver"]
# Files mode's ab figures: key, path, requests.
FILES_AB = [("1k", "1k.bin", 20000), ("dir", "", 20000), ("1m", "1m.bin", 2000)]
# Per files target: req/s of each ab figure, with the target's CPU µs per
# request (_cpu) and the load generator's busy share of its core (_gen);
# MB/s of the 256 MiB download.
FILES_FIGURES = [key + part for key, _, _ in FILES_AB for part in ["", "_cpu", "_gen"]] + ["256m"]

COMMANDS = {
    "keepalive": "wrk -t1 -c50 -d5s --latency http://127.0.0.1:PORT/1k.bin",
    "single": "wrk -t1 -c1 -d5s http://127.0.0.1:PORT/1k.bin",
    "bulk": "curl -s -o /dev/null -w '%{speed_download}' http://127.0.0.1:PORT/256m.bin",
    "newconn": "ab -q -n 10000 -c 20 http://127.0.0.1:PORT/1k.bin",
    "idle": f"bench/idle_conns.py 127.0.0.1 PORT {IDLE_CONNS} /1k.bin (the target's RSS, used memory and the kernel's counters, before and after)",
    "life": f"bench/conn_life.py 127.0.0.1 PORT {LIFE_CONNS} {LIFE_IDLE_SECS} /1k.bin (the target's CPU time before and after)",
    "files": "ab -q -n 20000 -c 20 http://127.0.0.1:PORT/PATH",
    "files_1m": "ab -q -n 2000 -c 10 http://127.0.0.1:PORT/1m.bin",
    "files_256m": "curl -s -o /dev/null -w '%{speed_download}' http://127.0.0.1:PORT/256m.bin",
}


def check_tools():
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if not os.path.exists(STREAM_MODULE):
        missing.append("libnginx-mod-stream")
    if missing:
        print("bench: missing tools. Install them with:", file=sys.stderr)
        print("  apt-get install -y " + " ".join(sorted(set(missing))), file=sys.stderr)
        sys.exit(1)
    for name in ["threadserver", "poolserver", "httpserver", "forkserver"]:
        if not os.access(os.path.join(ROOT, name), os.X_OK):
            sys.exit(f"bench: ./{name} is missing; run make first")
    for peer in [C_RELAY, TOKIO_RELAY]:
        if not os.access(peer, os.X_OK):
            sys.exit(f"bench: {os.path.relpath(peer, ROOT)} is missing; run make bench, which builds it")


class Procs:
    """Everything the benchmark starts, stopped on exit."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, port, cwd=None):
        p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, p))
        wait_listening(port, name, p)
        return p

    def stop(self, p):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def stop_all(self):
        for _, p in list(self.procs):
            self.stop(p)


def wait_listening(port, name, proc):
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: {name} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: {name} is not listening on {port}")


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def write_configs(tmp):
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    for name, size in [("1k.bin", 1024), ("1m.bin", 1 << 20), ("256m.bin", 256 << 20)]:
        with open(os.path.join(www, name), "wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 1 << 20))
                f.write(chunk)
                left -= len(chunk)
    os.chmod(tmp, 0o755)
    common = f"worker_processes 1;\ndaemon off;\nerror_log {tmp}/error.log;\nevents {{ worker_connections 20000; }}\n"
    temp_paths = " ".join(f"{k}_temp_path {tmp}/{k};" for k in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"])
    with open(os.path.join(tmp, "origin.conf"), "w") as f:
        f.write(common + f"pid {tmp}/origin.pid;\nhttp {{ access_log off; keepalive_requests 1000000; {temp_paths}\n"
                f"  server {{ listen {HOST}:{ORIGIN_PORT}; root {www}; }} }}\n")
    with open(os.path.join(tmp, "files.conf"), "w") as f:
        # As Debian's nginx.conf sets it: sendfile on (nginx's own default is
        # off), and TCP_CORK around each response.
        f.write(common + f"pid {tmp}/files.pid;\nhttp {{ access_log off; sendfile on; tcp_nopush on; {temp_paths}\n"
                f"  server {{ listen {HOST}:{dict(FILES_TARGETS)['nginx']}; root {www}; autoindex on; }} }}\n")
    with open(os.path.join(tmp, "stream.conf"), "w") as f:
        f.write(f"load_module {STREAM_MODULE};\n" + common + f"pid {tmp}/stream.pid;\n"
                f"stream {{ server {{ listen {HOST}:{dict(PROXIES)['nginx-stream']}; proxy_pass {HOST}:{ORIGIN_PORT}; }} }}\n")
    with open(os.path.join(tmp, "haproxy.cfg"), "w") as f:
        f.write("global\n  maxconn 9000\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n"
                "  timeout client 300s\n  timeout server 300s\n"
                f"listen relay\n  bind {HOST}:{dict(PROXIES)['haproxy']}\n  server origin {HOST}:{ORIGIN_PORT}\n")
    return www


def proxy_argv(name, port, tmp, pool_threads=128):
    upstream = f"{HOST}:{ORIGIN_PORT}"
    ours = lambda exe, *extra: [os.path.join(ROOT, exe), "--proxy", upstream, "--port", str(port), "--quiet", *extra]
    return {
        "haproxy": ["haproxy", "-db", "-f", os.path.join(tmp, "haproxy.cfg")],
        "nginx-stream": ["nginx", "-p", tmp, "-e", os.path.join(tmp, "error.log"), "-c", os.path.join(tmp, "stream.conf")],
        "socat": ["socat", f"TCP-LISTEN:{port},bind={HOST},fork,reuseaddr,backlog=1024", f"TCP:{upstream}"],
        "c-relay": [C_RELAY, str(port), HOST, str(ORIGIN_PORT)],
        "c-relay-nagle": [C_RELAY, str(port), HOST, str(ORIGIN_PORT), "nagle"],
        "tokio-relay": [TOKIO_RELAY, f"{HOST}:{port}", upstream],
        "threadserver": ours("threadserver"),
        "poolserver": ours("poolserver", "--num-threads", str(pool_threads)),
    }[name]


def files_argv(name, port, tmp, www):
    ours = lambda exe, *extra: [os.path.join(ROOT, exe), "--files", www, "--port", str(port), "--quiet", *extra]
    return {
        "httpserver": ours("httpserver"),
        "forkserver": ours("forkserver"),
        "threadserver": ours("threadserver"),
        "poolserver-4": ours("poolserver", "--num-threads", "4"),
        "poolserver-32": ours("poolserver", "--num-threads", "32"),
        "nginx": ["nginx", "-p", tmp, "-e", os.path.join(tmp, "error.log"), "-c", os.path.join(tmp, "files.conf")],
        "python-http.server": [sys.executable, "-m", "http.server", str(port), "--bind", HOST, "--directory", www],
    }[name]


def run(cmd):
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300)
    return out.stdout + out.stderr


def wrk(port, conns):
    out = run(COMMANDS["keepalive" if conns == 50 else "single"].replace("PORT", str(port)))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)] if p99 else None
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print(f"  wrk on {port} reported: {errors.group(0)}", file=sys.stderr)
    return rps, p99_ms


def ab(port, path="1k.bin", n=10000):
    key = {20000: "files", 2000: "files_1m"}.get(n, "newconn")
    cmd = COMMANDS[key].replace("PORT", str(port)).replace("PATH", path)
    out = run(cmd)
    m = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    if not m:
        print(f"  ab on {port} failed: {out.strip()[-200:]}", file=sys.stderr)
        return None
    if failed and int(failed.group(1)):
        print(f"  ab on {port}: {failed.group(1)} failed requests", file=sys.stderr)
    return float(m.group(1))


def ab_costed(port, pid, path, n):
    """`ab` as above, and what it cost: the target's CPU µs per request (its
    whole process tree), and how busy the load generator kept its core
    (its CPU time over the run's wall time; 1.0 is the whole core)."""
    target0, gen0, t0 = tree_cpu_seconds(pid), loadgen_cpu_seconds(), time.monotonic()
    rps = ab(port, path, n)
    target1, gen1, t1 = tree_cpu_seconds(pid), loadgen_cpu_seconds(), time.monotonic()
    if rps is None:
        return None, None, None
    return rps, (target1 - target0) * 1e6 / n, (gen1 - gen0) / (t1 - t0)


# One 256 MiB download takes a tenth of a second here, and where the
# scheduler puts curl and the server in it swings the rate by half. Each
# round takes the median of this many, interleaved as the rounds are.
DOWNLOADS_PER_ROUND = 5


def bulk(port, key="bulk"):
    """The median MB/s of DOWNLOADS_PER_ROUND downloads; None if one failed."""
    rates = []
    for _ in range(DOWNLOADS_PER_ROUND):
        out = run(COMMANDS[key].replace("PORT", str(port)))
        try:
            rates.append(float(out.strip()) / 1e6)
        except ValueError:
            print(f"  curl on {port} failed: {out.strip()[-200:]}", file=sys.stderr)
            return None
    return median(rates)


def meminfo():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            info[k] = int(v.split()[0])
    return info


# The kernel's own counters of the memory a connection can take: kernel
# stacks, page tables, slab (sockets, tasks, inodes), and anonymous pages
# (thread stacks, heap). Exact, but blind to page fragments that the kernel
# keeps per thread for sends (32 KiB for each thread that has written to a
# TCP socket), which only the machine-wide figure shows.
COUNTERS = ["KernelStack", "PageTables", "SUnreclaim", "SReclaimable", "AnonPages"]


def mem_used_kib():
    """Memory in use that is neither free nor page cache: a file written or
    evicted meanwhile does not move it."""
    i = meminfo()
    return i["MemTotal"] - i["MemFree"] - i["Buffers"] - i["Cached"]


def tree_pids(pid):
    """`pid` and all its descendants (socat forks, nginx workers, forkserver's children)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def tree_rss_kib(pid):
    """RSS of `pid` and all its descendants."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def tree_cpu_seconds(pid):
    """CPU time, user and system, of `pid` and its descendants, those alive
    and those already reaped (forkserver's children, counted in the parent's
    cutime and cstime once waited for)."""
    ticks = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in fields[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def loadgen_cpu_seconds():
    """CPU time, user and system, of the commands this script has run and
    waited for: the load generators."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def settle(most=90):
    """Waits until the machine's used memory stops moving: connections have
    closed, idle threads (which linger 1 s in httpserver's thread cache) have
    exited, and the kernel has given back what they held, which takes it
    seconds after the threads are gone. Stopped means three checks in a row,
    2 s apart, within 512 KiB."""
    time.sleep(3)
    last, still = mem_used_kib(), 0
    for _ in range(most // 2):
        time.sleep(2)
        now = mem_used_kib()
        still = still + 1 if abs(now - last) < 512 else 0
        if still == 3:
            return
        last = now


def hold_idle(port):
    """Opens the idle connections; returns the client once all are answered."""
    client = subprocess.Popen([sys.executable, os.path.join(BENCH, "idle_conns.py"), HOST, str(port), str(IDLE_CONNS), "/1k.bin"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if client.stdout.readline().strip() != "ready":
        client.kill()
        return None
    return client


def release(client):
    client.stdin.write("\n")
    client.stdin.close()
    client.wait()


def idle_memory(port, pid):
    """Per idle connection: the target's RSS, the machine's used memory, and
    the kernel's counters. Read once the connections have been idle long
    enough for httpserver's relay to move to fresh threads and for the
    memory of the threads it left to come back."""
    settle()
    rss0, mem0, counters0 = tree_rss_kib(pid), mem_used_kib(), meminfo()
    client = hold_idle(port)
    if client is None:
        print(f"  idle connections on {port} failed", file=sys.stderr)
        return None, None, None
    settle()
    rss1, mem1, counters1 = tree_rss_kib(pid), mem_used_kib(), meminfo()
    release(client)
    per = lambda a, b: (b - a) / IDLE_CONNS
    counted = {k: per(counters0[k], counters1[k]) for k in COUNTERS}
    return per(rss0, rss1), per(mem0, mem1), counted


def thread_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def quiet(pid, threads, most=30):
    """Waits until the target is back to `threads` threads (its cached and
    moved threads gone) and its CPU time has stopped moving."""
    deadline = time.time() + most
    last = tree_cpu_seconds(pid)
    while time.time() < deadline:
        time.sleep(0.5)
        now = tree_cpu_seconds(pid)
        if thread_count(pid) <= threads and now == last:
            return
        last = now


def conn_life(port, pid, conns=LIFE_CONNS, idle=LIFE_IDLE_SECS):
    """CPU µs of the target's process tree per connection that opens, makes
    one request, idles `idle` seconds and closes, `conns` of them at once:
    from accept to the last thread the connection used exiting."""
    threads = thread_count(pid)
    quiet(pid, threads)
    before = tree_cpu_seconds(pid)
    client = subprocess.run([sys.executable, os.path.join(BENCH, "conn_life.py"), HOST, str(port), str(conns),
                             str(idle), "/1k.bin"], capture_output=True, text=True)
    if client.stdout.strip() != "done":
        print(f"  connection lives on {port} failed: {client.stderr.strip()[-200:]}", file=sys.stderr)
        return None
    quiet(pid, threads)
    return (tree_cpu_seconds(pid) - before) / conns * 1e6


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def versions():
    def first_line(cmd):
        out = run(cmd).strip().splitlines()
        return out[0] if out else "?"
    return {
        "httpserver": first_line(f"cd {ROOT} && git describe --always --dirty"),
        "rustc": first_line("rustc --version"),
        "nginx": first_line("nginx -v"),
        "haproxy": first_line("haproxy -v"),
        "socat": first_line("socat -V | grep 'socat version'"),
        "wrk": first_line("wrk -v"),
        "ab": first_line("ab -V"),
        "curl": first_line("curl --version"),
        "python": platform.python_version(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files-rounds", type=int, default=5,
                        help="rounds of files mode, whose runs are shorter and swing more")
    args = parser.parse_args()
    check_tools()
    ports = [p for _, p in PROXIES + FILES_TARGETS] + [9106]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        sys.exit(f"bench: ports in use: {busy}")
    tmp = tempfile.mkdtemp(prefix="httpserver-bench-")
    procs = Procs()
    started = datetime.datetime.now(datetime.timezone.utc)
    # Taken before the run: the commit the measured servers were built from.
    about = versions()
    try:
        www = write_configs(tmp)
        nginx = ["nginx", "-p", tmp, "-e", os.path.join(tmp, "error.log")]
        origin = procs.start("origin", nginx + ["-c", os.path.join(tmp, "origin.conf")], ORIGIN_PORT)
        pids = {"direct": origin.pid}
        for name, port in PROXIES[1:]:
            pids[name] = procs.start(name, proxy_argv(name, port, tmp), port).pid
        proxy = {name: {m: [] for m in ["keepalive", "p99", "single", "bulk", "newconn", "idle_rss", "idle_machine",
                                        "idle_counted", "life"] + COUNTERS}
                 for name, _ in PROXIES}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}: proxy throughput", flush=True)
            for name, port in PROXIES:
                rps, p99 = wrk(port, 50)
                proxy[name]["keepalive"].append(rps)
                proxy[name]["p99"].append(p99)
                proxy[name]["single"].append(wrk(port, 1)[0])
                proxy[name]["bulk"].append(bulk(port))
                proxy[name]["newconn"].append(ab(port))
                print(f"  {name:14} {rps:9.0f} req/s  p99 {p99} ms", flush=True)
        # Idle memory: poolserver with a pool as large as the connections it must hold.
        procs.stop(next(p for n, p in procs.procs if n == "poolserver"))
        pool = procs.start("poolserver", proxy_argv("poolserver", 9106, tmp, pool_threads=2048), 9106)
        mem_ports = dict(PROXIES, poolserver=9106)
        pids["poolserver"] = pool.pid
        # Each worker serves one connection first, as in a server that has been
        # running: what a worker costs once is the pool's, not a connection's.
        release(hold_idle(9106))
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}: memory per idle connection", flush=True)
            for name, _ in PROXIES:
                rss, machine, counted = idle_memory(mem_ports[name], pids[name])
                proxy[name]["idle_rss"].append(rss)
                proxy[name]["idle_machine"].append(machine)
                proxy[name]["idle_counted"].append(sum(counted.values()) if counted else None)
                for k in COUNTERS:
                    proxy[name][k].append(counted[k] if counted else None)
                print(f"  {name:14} rss {rss} KiB, machine {machine} KiB, counted {counted} per connection", flush=True)
        # Connection lives: poolserver with a worker for each of them.
        procs.stop(pool)
        pool = procs.start("poolserver", proxy_argv("poolserver", 9106, tmp, pool_threads=LIFE_CONNS), 9106)
        pids["poolserver"] = pool.pid
        life_ports = dict(PROXIES, poolserver=9106)
        for name in LIFE_TARGETS:
            conn_life(life_ports[name], pids[name], idle=0)
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}: connection lives", flush=True)
            for name in LIFE_TARGETS:
                cost = conn_life(life_ports[name], pids[name])
                proxy[name]["life"].append(cost)
                print(f"  {name:14} {cost} µs a connection", flush=True)
        for name, p in list(procs.procs):
            if name != "origin":
                procs.stop(p)
        # Files mode.
        files_pids = {name: procs.start(name, files_argv(name, port, tmp, www), port, cwd=tmp).pid
                      for name, port in FILES_TARGETS}
        files = {name: {k: [] for k in FILES_FIGURES} for name, _ in FILES_TARGETS}
        for r in range(args.files_rounds):
            print(f"round {r + 1}/{args.files_rounds}: files mode", flush=True)
            for name, port in FILES_TARGETS:
                f = files[name]
                for key, path, n in FILES_AB:
                    rps, cpu, gen = ab_costed(port, files_pids[name], path, n)
                    f[key].append(rps)
                    f[key + "_cpu"].append(cpu)
                    f[key + "_gen"].append(gen)
                f["256m"].append(bulk(port, "files_256m"))
                print(f"  {name:18} {f['1k'][-1]} req/s (1 KiB, {f['1k_cpu'][-1]:.1f} µs), {f['dir'][-1]} req/s (/), "
                      f"{f['1m'][-1]} req/s (1 MiB, {f['1m_cpu'][-1]:.1f} µs), {f['256m'][-1]} MB/s (256 MiB)",
                      flush=True)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    proxy_med = {n: {m: median(v) for m, v in ms.items()} for n, ms in proxy.items()}
    files_med = {n: {m: median(v) for m, v in ms.items()} for n, ms in files.items()}
    report(started, (args.rounds, args.files_rounds), about, proxy_med, files_med)


PROXY_METRICS = [  # key, label, unit, higher is better
    ("keepalive", "keep-alive req/s (wrk -c50)", "req/s", True),
    ("p99", "keep-alive p99 latency", "ms", False),
    ("single", "one connection's round trips/s (wrk -c1)", "req/s", True),
    ("bulk", "bulk download (256 MiB, curl)", "MB/s", True),
    ("newconn", "new connections/s (ab -c20)", "req/s", True),
    ("idle_rss", "target RSS per idle connection", "KiB", False),
    ("idle_machine", "machine memory per idle connection", "KiB", False),
    ("idle_counted", "kernel-counted memory per idle connection", "KiB", False),
]


def fmt(v, unit=""):
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def best(values, higher):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return max(values) if higher else min(values)


def ratio(ours, peer, higher):
    if ours is None or peer is None or ours == 0 or peer == 0:
        return None
    return ours / peer if higher else peer / ours


def report_header(started, rounds, about):
    """What was measured, on what, with which commands."""
    proxy_rounds, files_rounds = rounds
    lines = ["# Benchmark results", "",
             f"Measured {started:%Y-%m-%d %H:%M} UTC by `make bench` (bench/bench.py), interleaved rounds "
             f"({proxy_rounds} for proxy mode, {files_rounds} for files mode), median of the rounds. Everything on "
             "127.0.0.1 of one machine: the load generator, the origin and the target share its cores.", "",
             f"- machine: `nproc` = {os.cpu_count()}, {platform.machine()}, kernel {platform.release()}",
             ]
    for k, v in about.items():
        lines.append(f"- {k}: {v}")
    lines += ["", "## Commands", "", "Origin: nginx, 1 worker, keep-alive, serving generated files of 1 KiB, 1 MiB "
              "and 256 MiB. PORT is each target's port.", ""]
    for k, v in COMMANDS.items():
        lines.append(f"- {k}: `{v}`")
    lines.append(f"- bulk and files_256m: the median of {DOWNLOADS_PER_ROUND} downloads in a row, in each round")
    lines += ["- targets: HAProxy 2 `mode tcp`, 1 thread; nginx `stream` `proxy_pass`, 1 worker; "
              "`socat TCP-LISTEN:PORT,fork TCP:origin`; `c-relay` (bench/peers/c-relay: a pthread per connection "
              "plus one for the second direction, blocking read()/write() on 8 KiB, shutdown(SHUT_WR) at end of "
              "stream, TCP_NODELAY on); `c-relay-nagle` (the same, with TCP_NODELAY left off, as a naive relay "
              "leaves it); `tokio-relay` (bench/peers/tokio-relay: tokio's multi-threaded runtime, "
              "`copy_bidirectional`, TCP_NODELAY on); `threadserver --proxy`; `poolserver --proxy --num-threads 128` "
              f"(for idle memory, `--num-threads 2048`, so that all {IDLE_CONNS} connections are held at once; each "
              "worker serves one connection before the measurement, so that what a worker costs once is counted "
              "as the pool's). httpserver's servers run with `--quiet`.",
              "- idle memory: used memory that is neither free nor page cache, and the kernel's counters, each "
              "read once it has stopped moving, before and after the connections are opened.", ""]
    return lines


def report_proxy(proxy, ratios):
    """Proxy mode beside HAProxy, nginx stream and socat; adds each metric's ratios for the chart."""
    lines = ["## Proxy mode", "", "Ratios are against the best of the peers (HAProxy, nginx-stream, socat) for that "
              "figure; above 1.0 is better than the best peer, for every row (for latency and memory, the ratio is "
              "peer / ours).", ""]
    names = [n for n, _ in PROXIES]
    lines.append("| metric | " + " | ".join(names) + " | threadserver / best peer | poolserver / best peer |")
    lines.append("|---" * (len(names) + 3) + "|")
    for key, label, unit, higher in PROXY_METRICS:
        peer = best([proxy[p][key] for p in PEERS], higher)
        row = [fmt(proxy[n][key]) for n in names]
        rs = [ratio(proxy[o][key], peer, higher) for o in OURS]
        ratios[label] = rs
        lines.append(f"| {label} ({unit}) | " + " | ".join(row) + " | " + " | ".join(fmt(r) if r else "—" for r in rs) + " |")
    return lines


def report_design_peers(proxy):
    """Ours against the C relay and tokio, the relays of the homework's own design."""
    lines = ["", "## Against relays of the homework's own design", "",
              "Each ratio is ours against that one relay (above 1.0: ours is better; for latency and memory, "
              "theirs / ours).", "",
              "| metric | threadserver / c-relay | poolserver / c-relay | threadserver / tokio-relay | poolserver / tokio-relay |",
              "|---|---|---|---|---|"]
    for key, label, unit, higher in PROXY_METRICS:
        rs = [ratio(proxy[o][key], proxy[d][key], higher) for d in DESIGN_PEERS for o in OURS]
        lines.append(f"| {label} | " + " | ".join(f"{fmt(r)}×" if r else "—" for r in rs) + " |")
    c = proxy["c-relay"]
    design_goals = [  # label, goal, ours, metric, higher, threshold
        ("keep-alive req/s vs c-relay", "threadserver ≥ 1.0×, poolserver ≥ 0.95×", "keepalive", True, [1.0, 0.95]),
        ("keep-alive p99: c-relay's / ours", "threadserver ≥ 1.0×, poolserver ≥ 0.95×", "p99", False, [1.0, 0.95]),
        ("one connection's round trips vs c-relay", "threadserver ≥ 1.0×", "single", True, [1.0, None]),
        ("new connections/s vs c-relay", "threadserver ≥ 1.5×", "newconn", True, [1.5, None]),
        ("bulk MB/s vs c-relay", "threadserver ≥ 1.0×", "bulk", True, [1.0, None]),
    ]
    nagle = proxy["c-relay-nagle"]
    lines += ["", "A naive relay leaves TCP_NODELAY off. The same C relay with it off (`c-relay-nagle`) does "
              f"{fmt(nagle['keepalive'])} keep-alive req/s (p99 {fmt(nagle['p99'])} ms) and "
              f"{fmt(nagle['single'])} round trips/s on one connection, against {fmt(c['keepalive'])} "
              f"(p99 {fmt(c['p99'])} ms) and {fmt(c['single'])} with it on. Nagle's algorithm holds back a "
              "small write while an earlier one is unacknowledged, so a response that the relay reads in "
              "two pieces waits for the client's delayed ACK; a request and a response that each fit one "
              "read never meet it. The comparison above is against the relay with it on, as ours has it."]
    lines += ["", "| target | goal | threadserver | poolserver | met |", "|---|---|---|---|---|"]
    for label, goal, key, higher, floors in design_goals:
        rs = [ratio(proxy[o][key], c[key], higher) for o in OURS]
        judged = [(o, r, f) for o, r, f in zip(OURS, rs, floors) if f is not None]
        met = all(r is not None and r >= f for _, r, f in judged)
        lines.append(f"| {label} | {goal} | {fmt(rs[0])}× | {fmt(rs[1])}× | {'yes' if met else 'no'} |")
    return lines


def report_targets(proxy):
    """The proxy's goals against the event-loop peers, and idle memory."""
    lines = ["", "## Targets", "", "| target | goal | threadserver | poolserver | met |", "|---|---|---|---|---|"]
    hap, stream = proxy["haproxy"], proxy["nginx-stream"]
    better = lambda key, higher: best([hap[key], stream[key]], higher)
    goals = [
        ("keep-alive req/s vs the better of HAProxy and nginx-stream", "≥ 1.0×", lambda r: r >= 1.0,
         [ratio(proxy[o]["keepalive"], better("keepalive", True), True) for o in OURS]),
        ("keep-alive p99 latency: best peer's / ours", "≥ 0.8× (within 1.25×)", lambda r: r >= 0.8,
         [ratio(proxy[o]["p99"], best([proxy[p]["p99"] for p in PEERS], False), False) for o in OURS]),
        ("one connection's round trips vs HAProxy", "≥ 1.0× (kept)", lambda r: r >= 1.0,
         [ratio(proxy[o]["single"], hap["single"], True) for o in OURS]),
        ("bulk MB/s vs HAProxy", "≥ 1.0× (kept)", lambda r: r >= 1.0, [ratio(proxy[o]["bulk"], hap["bulk"], True) for o in OURS]),
        ("new connections/s vs the better of HAProxy and nginx-stream", "≥ 1.0×", lambda r: r >= 1.0,
         [ratio(proxy[o]["newconn"], better("newconn", True), True) for o in OURS]),
    ]
    for label, goal, ok, rs in goals:
        met = "both" if all(r is not None and ok(r) for r in rs) else \
            ", ".join(o for o, r in zip(OURS, rs) if r is not None and ok(r)) or "no"
        lines.append(f"| {label} | {goal} | {fmt(rs[0])}× | {fmt(rs[1])}× | {met} |")
    for key, what in [("idle_machine", "machine memory"), ("idle_counted", "kernel-counted memory")]:
        mem = [proxy[o][key] for o in OURS]
        met = [o for o, m, goal in zip(OURS, mem, [80, 45]) if m is not None and m <= goal]
        lines.append(f"| {what} per idle proxied connection | threadserver ≤ 80 KiB, poolserver ≤ 45 KiB | "
                     f"{fmt(mem[0])} KiB | {fmt(mem[1])} KiB | {', '.join(met) or 'no'} |")
    return lines


def report_idle_memory(proxy):
    """Where an idle proxied connection's memory goes, counter by counter."""
    names = [n for n, _ in PROXIES]
    lines = ["", "## Where an idle connection's memory goes", "",
              "Per idle proxied connection, in KiB: the change in the kernel's counters while "
              f"{IDLE_CONNS} idle connections are held, after they have been idle long enough to settle. Each "
              "row includes the client's and the origin's share (the `direct` column: no proxy in between). "
              "None of these counts the page fragment the kernel keeps for each thread that has written to "
              "a TCP socket (32 KiB); the machine figure above does.", "",
              "| counter | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for k in COUNTERS:
        lines.append(f"| {k} | " + " | ".join(fmt(proxy[n][k]) for n in names) + " |")
    return lines


def report_files(files, ratios):
    """Files mode beside nginx as Debian deploys it, and its goals; adds the 1 KiB ratios for the chart."""
    lines = ["", "## Files mode (homework performance part)", "",
              "1 KiB file and `/`: `ab -n 20000 -c 20`, no keep-alive, a new connection per request; `/` is the "
              "directory listing (nginx: `autoindex on`). 1 MiB files: `ab -n 2000 -c 10`. 256 MiB: downloads "
              "with curl. nginx runs 1 worker as Debian's nginx.conf sets it: `sendfile on; tcp_nopush on`. Ratio: against nginx.", "",
              "| server | 1 KiB file (req/s) | ratio | `/` listing (req/s) | ratio | 1 MiB files (req/s) | ratio "
              "| 256 MiB download (MB/s) | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    nginx = files["nginx"]
    for name, _ in FILES_TARGETS:
        f = files[name]
        cells = [f"{fmt(f[k])} | {fmt(ratio(f[k], nginx[k], True))}" for k in ["1k", "dir", "1m", "256m"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    files_goals = [
        ("256 MiB download vs nginx", "threadserver, poolserver ≥ 1.0×", "256m", {"threadserver": 1.0, "poolserver": 1.0}),
        ("1 MiB files vs nginx", "threadserver, poolserver ≥ 1.0×", "1m", {"threadserver": 1.0, "poolserver": 1.0}),
        ("1 KiB files vs nginx", "poolserver, httpserver ≥ 1.0×; threadserver ≥ 0.85×", "1k",
         {"threadserver": 0.85, "poolserver": 1.0, "httpserver": 1.0}),
    ]
    lines += ["", "| target | goal | threadserver | poolserver-4 | httpserver | met |",
              "|---|---|---|---|---|---|"]
    for label, goal, key, floors in files_goals:
        got = {"threadserver": files["threadserver"][key], "poolserver": files["poolserver-4"][key],
               "httpserver": files["httpserver"][key]}
        rs = {n: ratio(v, nginx[key], True) for n, v in got.items()}
        met = all(rs[n] is not None and rs[n] >= f for n, f in floors.items())
        lines.append(f"| {label} | {goal} | " + " | ".join(f"{fmt(rs[n])}×" for n in got) + f" | {'yes' if met else 'no'} |")
    ratios["files mode 1 KiB vs nginx"] = [ratio(files[o]["1k"], nginx["1k"], True) for o in ["threadserver", "poolserver-4"]]
    return lines + report_files_cost(files)


def report_files_cost(files):
    """What each files request cost the target, and how busy ab kept its core."""
    keys = [key for key, _, _ in FILES_AB]
    lines = ["", "### What a request costs the target", "",
             "CPU time, user and system, of the target's whole process tree (nginx's master and worker, "
             "forkserver's children), per request, in µs, in the same ab runs as above. Ratio: nginx's / ours "
             "(above 1.0: ours costs less). `ab` is one thread; the last two columns say how busy it kept its core "
             "(its CPU time over the run's wall time). Where that is near 100%, the req/s above is ab's own rate, "
             "not the target's limit, and the CPU a request costs the target is what tells the servers apart.", ""]
    lines += ["| server | 1 KiB file (µs) | ratio | `/` listing (µs) | ratio | 1 MiB file (µs) | ratio | "
              "ab busy, 1 KiB | ab busy, 1 MiB |", "|---|---|---|---|---|---|---|---|---|"]
    nginx = files["nginx"]
    for name, _ in FILES_TARGETS:
        f = files[name]
        cells = [f"{fmt(f[k + '_cpu'])} | {fmt(ratio(f[k + '_cpu'], nginx[k + '_cpu'], False))}" for k in keys]
        busy = [f"{100 * f[k + '_gen']:.0f}%" if f[k + "_gen"] is not None else "—" for k in ["1k", "1m"]]
        lines.append(f"| {name} | " + " | ".join(cells + busy) + " |")
    return lines


def report_life(proxy):
    """What a connection's whole life costs the target, against the C relay."""
    c = proxy["c-relay"]["life"]
    lines = ["", "## What a connection's life costs", "",
             f"CPU µs of the target's process tree per connection that opens, makes one request, idles "
             f"{LIFE_IDLE_SECS} s and closes, {LIFE_CONNS} at once (`{COMMANDS['life']}`; poolserver with "
             f"`--num-threads {LIFE_CONNS}`), from accept to the exit of the last thread it used. The ratio "
             "is the target's over the C relay's (at or below 1.0: as cheap or cheaper).", "",
             "| target | µs a connection | / c-relay |", "|---|---|---|"]
    for name in LIFE_TARGETS:
        v = proxy[name]["life"]
        r = v / c if v is not None and c else None
        lines.append(f"| {name} | {fmt(v)} | {fmt(r)}× |" if r else f"| {name} | {fmt(v)} | — |")
    return lines


def report(started, rounds, about, proxy, files):
    ratios = {}
    lines = (report_header(started, rounds, about) + report_proxy(proxy, ratios) + report_design_peers(proxy)
             + report_targets(proxy) + report_idle_memory(proxy) + report_life(proxy) + report_files(files, ratios)
             + ["", "## Chart", "", "![ratios to the best peer](ratios.svg)", ""])
    with open(os.path.join(BENCH, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(BENCH, "ratios.svg"), "w") as f:
        f.write(svg_chart(ratios))
    print("wrote bench/RESULTS.md and bench/ratios.svg")


def svg_chart(ratios):
    """Horizontal bars: each figure's ratio to the best peer, for threadserver
    and poolserver, with a line at 1.0 (as good as the best peer)."""
    rows = list(ratios.items())
    width, left, bar_h, gap = 900, 330, 12, 14
    top = 50
    height = top + len(rows) * (2 * bar_h + gap) + 40
    max_ratio = max([2.0] + [r for _, rs in rows for r in rs if r])
    scale = (width - left - 40) / max_ratio
    colors = ["#3b7dd8", "#f0a202"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<text x="10" y="20" font-size="15" font-weight="bold">httpserver: ratio to the best peer (higher is better)</text>']
    for i, (name, color) in enumerate(zip(OURS, colors)):
        out.append(f'<rect x="{left + i * 160}" y="30" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{left + i * 160 + 18}" y="40">{name}</text>')
    y = top
    for label, rs in rows:
        out.append(f'<text x="{left - 8}" y="{y + bar_h + 4}" text-anchor="end">{html.escape(label)}</text>')
        for i, r in enumerate(rs):
            w = (r or 0) * scale
            out.append(f'<rect x="{left}" y="{y + i * bar_h}" width="{w:.1f}" height="{bar_h - 2}" fill="{colors[i]}"/>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + i * bar_h + bar_h - 3}" font-size="10">{fmt(r) if r else "—"}</text>')
        y += 2 * bar_h + gap
    x1 = left + scale
    out.append(f'<line x1="{x1:.1f}" y1="{top - 5}" x2="{x1:.1f}" y2="{y}" stroke="#c00" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x1 + 4:.1f}" y="{y + 14}" fill="#c00">1.0 = the best peer</text>')
    out.append("</svg>\n")
    return "\n".join(out)


if __name__ == "__main__":
    main()
