#!/usr/bin/env python3
"""The release rush: every resident asks for a place the instant the slots are released.

    rush.py RESIDENTS_FILE SECRET_FILE TEMPLATE_TOKEN RELEASE_EPOCH_MS BASE_URL [BASE_URL ...]

RESIDENTS_FILE has one line per resident, "<Patient id> <Slot id>": that resident books a
place of that Slot for that Patient. Each resident gets a token of their own, signed (HS256)
with the server's development secret from the claims of TEMPLATE_TOKEN with `sub` and
`fhirUser` changed. One keep-alive connection per resident is opened before the release
(spread over the BASE_URLs, one per server process) in the 2 s before the release (the server
closes a connection idle for 5 s); at RELEASE_EPOCH_MS every request goes.
Prints, as JSON: how many answers of each status, the latency percentiles of the answers
(ms, from a request's last byte sent to its answer's last byte, and from the release), and
the ids of the booked Appointments.
"""
import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
import urllib.parse


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_for(secret, template, patient, n):
    header, payload, _ = template.split(".")
    claims = json.loads(unb64(payload))
    claims["sub"] = f"rush-resident-{n}"
    claims["fhirUser"] = f"Patient/{patient}"
    claims["scope"] = "patient/*.cruds"
    claims["role"] = "resident"
    claims.pop("org", None)
    body = header + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return body + "." + b64(sig)


def request(host, token, patient, slot):
    body = json.dumps({
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": {
            "resourceType": "Appointment", "status": "proposed",
            "slot": [{"reference": f"Slot/{slot}"}],
            "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "needs-action"}],
        }}],
    }).encode()
    head = (
        f"POST /fhir/Appointment/$book HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\n"
        f"Accept: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_answer(reader):
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
        if name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
    else:
        body = await reader.readexactly(length)
    return status, body


async def main():
    residents_file, secret_file, template, release_ms = sys.argv[1:5]
    bases = [urllib.parse.urlsplit(b) for b in sys.argv[5:]]
    secret = base64.b64decode(open(secret_file).read().strip())
    residents = [line.split() for line in open(residents_file) if line.strip()]
    release = int(release_ms) / 1000.0
    payloads = []
    for i, (patient, slot) in enumerate(residents):
        url = bases[i % len(bases)]
        payloads.append((url, request(url.netloc, token_for(secret, template, patient, i), patient, slot)))
    # Connect in the last two seconds before the release (the server closes a connection that
    # sends nothing for 5 s), 250 at a time (the listen backlog).
    await asyncio.sleep(max(0.0, release - 2.0 - time.time()))
    conns = []
    for k in range(0, len(payloads), 250):
        batch = payloads[k:k + 250]
        opened = await asyncio.gather(*(asyncio.open_connection(u.hostname, u.port) for u, _ in batch))
        conns += [(r, w, p) for (r, w), (_, p) in zip(opened, batch)]
    go = asyncio.Event()
    results = []

    async def one(reader, writer, payload):
        await go.wait()
        writer.write(payload)
        await writer.drain()
        sent = time.time()
        status, body = await read_answer(reader)
        done = time.time()
        booked = None
        if status == 200:
            booked = json.loads(body).get("id")
        elif status >= 500:
            sys.stderr.write(body.decode(errors="replace")[:300] + "\n")
        results.append((status, (done - sent) * 1000, (done - release) * 1000, booked))
        writer.close()

    tasks = [asyncio.create_task(one(*c)) for c in conns]
    await asyncio.sleep(0)
    wait = release - time.time()
    if wait < 0:
        sys.exit(f"the release passed {-wait:.1f} s before the {len(conns)} connections were open")
    await asyncio.sleep(wait)
    go.set()
    await asyncio.gather(*tasks)

    def pct(values, p):
        values = sorted(values)
        return round(values[min(len(values) - 1, int(len(values) * p))], 1)

    statuses = {}
    for s, *_ in results:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    answer = [r[1] for r in results]
    since = [r[2] for r in results]
    print(json.dumps({
        "requests": len(results),
        "status": statuses,
        "answer_ms": {"p50": pct(answer, 0.5), "p90": pct(answer, 0.9), "p99": pct(answer, 0.99), "max": pct(answer, 1.0)},
        "since_release_ms": {"p50": pct(since, 0.5), "p99": pct(since, 0.99), "max": pct(since, 1.0)},
        "booked": [r[3] for r in results if r[3]],
    }))


asyncio.run(main())
