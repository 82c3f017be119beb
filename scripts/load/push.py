#!/usr/bin/env python3
"""Push transaction bundles with N concurrent pushers, as hospital systems would.

    push.py BASE_URL BUNDLE_LIST TOKEN_DIR DEFAULT_TOKEN PUSHERS OUT_DIR

Each pusher keeps one HTTP connection open and takes the next bundle from the shared list
(the file names one bundle per line; a bundle in directory org-N is pushed with the token in
TOKEN_DIR/org-N, else DEFAULT_TOKEN). Prints one line per bundle, "<status> <seconds>", the
time from the first byte sent to the last byte of the answer; the answer of a failed push is
kept in OUT_DIR/failed-<org>-<bundle>. One process with a thread per pusher: the pushers share
the machine with the server, and a process per bundle (curl) cost more CPU than they save.
"""
import http.client
import os
import queue
import sys
import threading
import time
import urllib.parse


def main():
    base, listing, token_dir, default_token, pushers, out_dir = sys.argv[1:7]
    url = urllib.parse.urlsplit(base)
    todo = queue.Queue()
    for line in open(listing):
        if line.strip():
            todo.put(line.strip())
    tokens = {}
    for name in os.listdir(token_dir):
        with open(os.path.join(token_dir, name)) as f:
            tokens[name] = f.read().strip()
    lock = threading.Lock()
    results = []

    def pusher():
        conn = None
        while True:
            try:
                path = todo.get_nowait()
            except queue.Empty:
                break
            org = os.path.basename(os.path.dirname(path))
            with open(path, "rb") as f:
                body = f.read()
            headers = {
                "Authorization": "Bearer " + tokens.get(org, default_token),
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
            }
            for attempt in (1, 2):
                if conn is None:
                    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
                try:
                    start = time.monotonic()
                    conn.request("POST", url.path.rstrip("/") + "/fhir", body, headers)
                    reply = conn.getresponse()
                    answer = reply.read()
                    took = time.monotonic() - start
                    break
                except (http.client.HTTPException, ConnectionError):
                    # The server closed a kept-alive connection: reconnect once.
                    conn.close()
                    conn = None
                    if attempt == 2:
                        raise
            if reply.status != 200:
                name = f"failed-{org}-{os.path.basename(path)}"
                with open(os.path.join(out_dir, name), "wb") as f:
                    f.write(answer)
            with lock:
                results.append(f"{reply.status} {took:.6f}")
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=pusher) for _ in range(int(pushers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("\n".join(results))


if __name__ == "__main__":
    main()
