#!/usr/bin/env python3
"""make stalls: how long a client that stops reading holds a server, by the
wall clock, with nginx beside us.

The client asks for a 64 MiB file (through the proxy: a 64 MiB stream from
an origin) with a 4 KiB receive window, and never reads. The time reported
is from its request until the server no longer holds the connection: no fd
of the server's processes is that connection's socket any more (so it does
not matter whether the server logs, resets or closes). nginx runs as
Debian's nginx.conf sets it (1 worker, `sendfile on; tcp_nopush on`) with
`send_timeout T`; ours run with `--send-timeout T` (files) or
`--idle-timeout T` (proxy). What README promises: T plus a quarter of it.

Usage: bench/stalled.py [--timeouts 3,6,60]
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from bench import wait_listening  # bench/ is this script's directory, first on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
SIZE = 64 << 20


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def descendants(pid):
    out = [pid]
    for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
        out += descendants(int(child))
    return out


def socket_inodes(pids):
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            pass
    return inodes


def connection_inode(server_port, client_port):
    """The inode of the server's end of the connection from client_port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            f = line.split()
            local, remote = int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16)
            if local == server_port and remote == client_port and f[9] != "0":
                return f[9]
    return None


def held_for(server, port, path):
    """Asks for `path` with a 4 KiB window and never reads; returns the
    seconds until no process of `server` holds the connection."""
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.connect((HOST, port))
    client_port = c.getsockname()[1]
    inode = None
    for _ in range(500):
        inode = connection_inode(port, client_port)
        if inode and inode in socket_inodes(descendants(server.pid)):
            break
        time.sleep(0.01)
    else:
        sys.exit(f"the server never took up the connection: {server.args}")
    asked = time.monotonic()
    c.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    while time.monotonic() - asked < 600:
        if inode not in socket_inodes(descendants(server.pid)):
            c.close()
            return time.monotonic() - asked
        time.sleep(0.01)
    c.close()
    return float("nan")


def origin(port):
    """A plain origin: answers every connection with a 64 MiB stream."""
    srv = socket.create_server((HOST, port))
    chunk = b"x" * 65536

    def serve(conn):
        with conn:
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
                for _ in range(SIZE // len(chunk)):
                    conn.sendall(chunk)
            except OSError:
                pass

    def accept():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def nginx_conf(tmp, port, www, timeout):
    conf = os.path.join(tmp, f"nginx-{timeout}.conf")
    with open(conf, "w") as f:
        f.write(f"worker_processes 1; pid {tmp}/nginx-{timeout}.pid; daemon off;\n"
                f"events {{ worker_connections 1024; }}\n"
                f"http {{ access_log off; sendfile on; tcp_nopush on; send_timeout {timeout};\n"
                f"  server {{ listen {HOST}:{port}; root {www}; }} }}\n")
    return conf


def measure(make_argv, path, tmp):
    port = free_port()
    argv = make_argv(port)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    try:
        wait_listening(port, argv[0], proc)
        return held_for(proc, port, path)
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeouts", default="3,6")
    args = ap.parse_args()
    timeouts = [int(t) for t in args.timeouts.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # nginx's worker reads the files as another user
        www = os.path.join(tmp, "www")
        os.mkdir(www)
        with open(os.path.join(www, "huge.bin"), "wb") as f:
            f.write(os.urandom(SIZE))
        origin_port = free_port()
        origin(origin_port)
        rows = []
        for t in timeouts:
            runs = [("nginx `send_timeout`",
                     lambda port: ["nginx", "-p", tmp, "-e", "/dev/null", "-c", nginx_conf(tmp, port, www, t)],
                     "/huge.bin")]
            for server in ["httpserver", "forkserver", "threadserver", "poolserver"]:
                pool = ["--num-threads", "4"] if server == "poolserver" else []
                runs.append((f"{server} `--send-timeout`",
                             lambda port, server=server, pool=pool: [
                                 os.path.join(ROOT, server), "--files", www, "--port", str(port), "--quiet",
                                 "--send-timeout", str(t)] + pool,
                             "/huge.bin"))
            runs.append(("threadserver `--proxy --idle-timeout`",
                         lambda port: [os.path.join(ROOT, "threadserver"), "--proxy", f"{HOST}:{origin_port}",
                                       "--port", str(port), "--quiet", "--idle-timeout", str(t)],
                         "/stream"))
            for name, make_argv, path in runs:
                held = measure(make_argv, path, tmp)
                rows.append((name, t, held))
                print(f"| {name} | {t} s | {held:.2f} s | {t * 1.25:.2f} s |", flush=True)
    print()
    print("| server | timeout | the stalled client is held for | T + T/4 |")
    print("|---|---|---|---|")
    for name, t, held in rows:
        print(f"| {name} | {t} s | {held:.2f} s | {t * 1.25:.2f} s |")


if __name__ == "__main__":
    main()
