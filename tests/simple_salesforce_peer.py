"""Reads an object from the simulator with the unmodified simple-salesforce client (PyPI) and
prints what it got, as JSON: the Ids from query_all (deleted rows included) and the rows of a
Bulk API 2.0 download. Usage: simple_salesforce_peer.py INSTANCE_URL SESSION_ID OBJECT FIELDS"""

import csv
import json
import sys
import tempfile

from simple_salesforce import Salesforce


def main():
    instance_url, session_id, sobject, fields = sys.argv[1:5]
    fields = fields.split(",")
    sf = Salesforce(instance_url=instance_url, session_id=session_id, version="62.0")
    soql = "SELECT {} FROM {}".format(", ".join(fields), sobject)

    query_all = sf.query_all(soql, include_deleted=True)["records"]
    query_all_ids = sorted(record["Id"] for record in query_all)

    bulk2_rows = []
    with tempfile.TemporaryDirectory() as directory:
        results = getattr(sf.bulk2, sobject).download(soql, path=directory, max_records=100, wait=0)
        for result in results:
            with open(result["file"], newline="", encoding="utf-8") as handle:
                bulk2_rows.extend(csv.DictReader(handle))
    print(json.dumps({"query_all_ids": query_all_ids, "bulk2_rows": bulk2_rows, "bulk2_files": len(results)}))


if __name__ == "__main__":
    main()
