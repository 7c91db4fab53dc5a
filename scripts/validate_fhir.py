#!/usr/bin/env python3
"""Validate FHIR R4 resources with an independent implementation (PyPI fhir.resources 6.4.0,
the last release whose default model is R4). Usage: validate_fhir.py FILE... ; each file holds
one resource or a JSON array of resources. Exit 1 and print every problem when one is invalid."""
import json
import sys

from fhir.resources import construct_fhir_element

problems = []
count = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    for i, res in enumerate(data if isinstance(data, list) else [data]):
        count += 1
        try:
            construct_fhir_element(res["resourceType"], res)
        except Exception as e:  # report all, not the first
            problems.append(f"{path}[{i}] {res.get('resourceType')}: {e}")
for p in problems:
    print(p)
print(f"{count - len(problems)}/{count} resources valid")
sys.exit(1 if problems else 0)
