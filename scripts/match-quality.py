#!/usr/bin/env python3
"""Precision and recall of the resident index's links on the synthetic city.

    scripts/match-quality.py BASE_URL TRUTH_TSV   (the token in $TOKEN)

Reads every institution Patient through the API (following next links), maps each to its
golden resident (its `link` of type `refer`) and to the true resident (`truth.tsv` of the
fixtures generator, by MRN system and value), and counts pairs of institution records:
a pair is linked when both have the same golden resident, and true when both are the same
resident. Precision = true linked pairs / linked pairs; recall = true linked pairs / true pairs.
"""
import collections
import json
import os
import sys
import urllib.request

base, truth_path = sys.argv[1], sys.argv[2]
token = os.environ["TOKEN"]

truth = {}
with open(truth_path) as f:
    next(f)
    for line in f:
        system, mrn, resident = line.rstrip("\n").split("\t")
        truth[(system, mrn)] = resident

url = base + "/fhir/Patient?_count=1000&_tag:not=urn:huimin:CodeSystem:resident-index|golden"
golden_of = {}
while url:
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    page = json.load(urllib.request.urlopen(req))
    for e in page.get("entry", []):
        p = e["resource"]
        key = next(((i.get("system"), i.get("value")) for i in p.get("identifier", [])
                    if (i.get("system"), i.get("value")) in truth), None)
        refer = [l["other"]["reference"] for l in p.get("link", []) if l.get("type") == "refer"]
        if key and refer:
            golden_of[key] = refer[0]
    url = next((l["url"] for l in page.get("link", []) if l["relation"] == "next"), None)


def pairs(groups):
    return sum(n * (n - 1) // 2 for n in groups.values())


by_golden = collections.Counter(golden_of.values())
by_resident = collections.Counter(truth[k] for k in golden_of)
both = collections.Counter((golden_of[k], truth[k]) for k in golden_of)
linked, true, true_linked = pairs(by_golden), pairs(by_resident), pairs(both)
print(f"institution Patients: {len(golden_of)} of {len(truth)}; residents: {len(by_resident)}; "
      f"golden residents: {len(by_golden)}")
print(f"linked pairs: {linked}, true pairs: {true}, true linked pairs: {true_linked}")
print(f"precision: {true_linked / linked if linked else 1:.5f}, "
      f"recall: {true_linked / true if true else 1:.5f}")
