"""The peer of `sfpipe bench`: the unmodified simple-salesforce (PyPI) downloading an object with
Bulk API 2.0 (`bulk2 ... download`) to files, measured from inside: wall time, CPU seconds and peak
RSS (getrusage). Prints one JSON line as `sfpipe bench-child` does.

Usage: simple_salesforce_bench.py INSTANCE_URL OBJECT PAGE_RECORDS DIRECTORY
(logs in with the simulator's client credentials; REQUESTS_CA_BUNDLE trusts its certificate)"""

import json
import os
import resource
import sys
import time

import requests
from simple_salesforce import Salesforce


def main():
    instance_url, sobject, page_records, directory = sys.argv[1:5]
    started = time.perf_counter()
    token = requests.post(
        instance_url + "/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sfpipe-demo-client",
            "client_secret": "sfpipe-demo-secret",
        },
        timeout=60,
    ).json()["access_token"]
    sf = Salesforce(instance_url=instance_url, session_id=token, version="62.0")
    fields = [
        f["name"]
        for f in getattr(sf, sobject).describe()["fields"]
        if f["type"] not in ("address", "location", "base64")
    ]
    soql = "SELECT {} FROM {}".format(", ".join(fields), sobject)
    os.makedirs(directory, exist_ok=True)
    results = getattr(sf.bulk2, sobject).download(
        soql, path=directory, max_records=int(page_records), wait=0.1
    )
    rows = sum(r.get("number_of_records", 0) for r in results)
    byte_count = sum(os.path.getsize(r["file"]) for r in results)
    for r in results:
        os.remove(r["file"])
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,
        "rows": rows,
        "bytes": byte_count,
    }))


if __name__ == "__main__":
    main()
