#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, sends one GET on each and reads
its answer, then holds them all idle. Prints "ready" when every connection has
had its answer, then waits for a line on stdin (or EOF) before closing them."""
import socket
import sys


def main():
    host, port, n, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    conns = open_answered(host, port, n, path)
    print("ready", flush=True)
    sys.stdin.readline()
    for s in conns:
        s.close()


def open_answered(host, port, n, path):
    """Opens `n` connections, sends one GET of `path` on each, and returns
    them once every one has had its whole answer."""
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    conns = []
    for _ in range(n):
        s = socket.create_connection((host, port))
        s.sendall(request)
        conns.append(s)
    for s in conns:
        read_response(s)
    return conns


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed before its answer")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed inside its body")
        body += chunk


if __name__ == "__main__":
    main()
