"""Soak and concurrency against a live WebUI with TinyBreaker (same machine): the host's resident memory over many
TinyBreaker generations with a new prompt each time, and several clients at once.

    python bench/live_soak.py --url http://127.0.0.1:7860 [--pid PID] [--runs 50] [--clients 4]

Prints the host's RSS after each run and the growth from run 10 to the last (goal < 5 %; the first runs load models
and fill caches), then fires --clients requests at once and reports how many were answered 200. The host's PID is
found from the port it listens on when --pid is not given (psutil).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from urllib.parse import urlparse


def post(url: str, body: dict, timeout: float) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {"text": error.read().decode("utf-8", "replace")}


def host_process(url: str, pid: int | None):
    import psutil

    if pid:
        return psutil.Process(pid)
    port = urlparse(url).port
    for connection in psutil.net_connections(kind="tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == psutil.CONN_LISTEN:
            return psutil.Process(connection.pid)
    sys.exit(f"no process listens on port {port}; pass --pid")


def request_body(index: int, size: int) -> dict:
    subjects = ("a lighthouse", "a red fox", "a city at night", "a bowl of fruit", "a sailing ship", "a robot")
    return {"prompt": f"{subjects[index % len(subjects)]}, variation {index}", "negative_prompt": "blurry",
            "steps": 2, "width": size, "height": size, "seed": index,
            "alwayson_scripts": {"TinyBreaker": {"args": [{"enabled": True, "base_steps": 4}]}}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    endpoint = args.url.rstrip("/") + "/sdapi/v1/txt2img"
    process = host_process(args.url, args.pid)

    rss = []
    for index in range(args.runs):
        started = time.time()
        status, answer = post(endpoint, request_body(index, args.size), args.timeout)
        if status != 200:
            print(f"run {index + 1}: HTTP {status}: {str(answer)[:300]}")
            return 1
        rss.append(process.memory_info().rss)
        print(f"run {index + 1:3d}: {time.time() - started:6.1f} s, host RSS {rss[-1] / 2**20:8.1f} MiB", flush=True)
    if len(rss) >= 10:
        growth = rss[-1] / rss[9] - 1
        print(f"RSS growth from run 10 to run {len(rss)}: {growth * 100:+.2f} % (goal < 5 %)")

    results: list[int] = []
    threads = [threading.Thread(target=lambda i=i: results.append(post(endpoint, request_body(1000 + i, args.size),
                                                                        args.timeout)[0]))
               for i in range(args.clients)]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answered = sum(status == 200 for status in results)
    print(f"{args.clients} clients at once: {answered} answered 200, {len(results) - answered} failed "
          f"({time.time() - started:.1f} s)")
    return 0 if answered == args.clients else 1


if __name__ == "__main__":
    sys.exit(main())
