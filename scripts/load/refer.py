#!/usr/bin/env python3
"""Referrals at a fixed rate: `$refer` of one up-referral per tick, each Task carrying the
identifier "N-<i>" (so that its notification can be matched), over a few keep-alive
connections. Writes "<send epoch ms> N-<i> <status> <answer epoch ms>" per referral to OUT.

    refer.py BASE TOKEN PATIENTS_FILE RATE SECONDS CLINIC_ROLE OUT
"""
import asyncio
import json
import sys
import time
import urllib.parse


async def main():
    base, token, patients_file, rate, seconds, role, out_path = sys.argv[1:8]
    rate, seconds = float(rate), float(seconds)
    patients = open(patients_file).read().split()
    url = urllib.parse.urlparse(base)
    conns = [await asyncio.open_connection(url.hostname, url.port) for _ in range(16)]
    free = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    out = open(out_path, "w")
    n = int(rate * seconds)

    async def one(i):
        pid = patients[i % len(patients)]
        body = json.dumps({"resourceType": "Parameters", "parameter": [
            {"name": "serviceRequest", "resource": {
                "resourceType": "ServiceRequest", "status": "active", "intent": "order",
                "category": [{"coding": [{"system": "urn:huimin:CodeSystem:request-category", "code": "referral-up"}]}],
                "subject": {"reference": f"Patient/{pid}"},
                "requester": {"reference": f"PractitionerRole/{role}"},
                "performer": [{"reference": "Organization/hospital"}],
                "reasonCode": [{"text": "血压控制不佳"}]}},
            {"name": "task", "resource": {
                "resourceType": "Task", "status": "requested", "intent": "order",
                "identifier": [{"system": "urn:bench:referral", "value": f"N-{i}"}],
                "for": {"reference": f"Patient/{pid}"},
                "owner": {"reference": "Organization/hospital"}}}]}).encode()
        head = (f"POST /fhir/ServiceRequest/$refer HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        reader, writer = await free.get()
        sent = time.time() * 1000
        writer.write(head + body)
        await writer.drain()
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        answered = time.time() * 1000
        free.put_nowait((reader, writer))
        out.write(f"{sent:.1f} N-{i} {status_line.split()[1].decode()} {answered:.1f}\n")

    start = time.time()
    tasks = []
    for i in range(n):
        delay = start + i / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    out.close()


asyncio.run(main())
