#!/usr/bin/env python3
"""Connection lives, N at once: opens N connections to HOST:PORT, makes one
HTTP/1.1 request on each and reads its answer, holds them all idle for IDLE
seconds, then closes them. Prints "done" once every connection is closed.

What a relay spends on a connection's whole life (accepting it, connecting
upstream, its threads, a request each way, idling, the close) is read by the
caller from the target's CPU time before and after.

Usage: conn_life.py HOST PORT N IDLE PATH
"""
import resource
import sys
import time

from idle_conns import open_answered


def main():
    host, port, n, idle, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 64)), hard))
    conns = open_answered(host, port, n, path)
    time.sleep(idle)
    for s in conns:
        s.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
