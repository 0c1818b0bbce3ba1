"""Reads an object from the simulator with the unmodified simple-salesforce client (PyPI) and
prints what it got, as JSON.

    simple_salesforce_peer.py INSTANCE_URL SESSION_ID OBJECT FIELDS
        the Ids from query_all (deleted rows included) and the rows of a Bulk API 2.0 download;
    simple_salesforce_peer.py --jwt LOGIN_HOST_URL USERNAME CONSUMER_KEY KEY_FILE OBJECT
        logs in with the JWT bearer flow as simple-salesforce does it (to
        https://login.salesforce.com, which this script routes to LOGIN_HOST_URL, the simulator's
        stand-in for that host), then counts the object's rows: the instance URL and the count.
"""

import csv
import json
import sys
import tempfile

import requests
from simple_salesforce import Salesforce

LOGIN_HOST = "https://login.salesforce.com"


class LoginHostRoute(requests.adapters.HTTPAdapter):
    """Sends requests for login.salesforce.com to the simulator's login host: name resolution,
    nothing more; simple-salesforce builds every request itself."""

    def __init__(self, target):
        super().__init__()
        self.target = target.rstrip("/")

    def send(self, request, **kwargs):
        request.url = self.target + request.url[len(LOGIN_HOST):]
        return super().send(request, **kwargs)


def read_with_session(instance_url, session_id, sobject, fields):
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
    return {"query_all_ids": query_all_ids, "bulk2_rows": bulk2_rows, "bulk2_files": len(results)}


def read_with_jwt(login_host_url, username, consumer_key, key_file, sobject):
    session = requests.Session()
    session.mount(LOGIN_HOST, LoginHostRoute(login_host_url))
    sf = Salesforce(
        username=username,
        consumer_key=consumer_key,
        privatekey_file=key_file,
        domain="login",
        version="62.0",
        session=session,
    )
    total = sf.query("SELECT Id FROM {}".format(sobject))["totalSize"]
    return {"instance": sf.sf_instance, "total": total}


def main():
    if sys.argv[1] == "--jwt":
        print(json.dumps(read_with_jwt(*sys.argv[2:7])))
    else:
        print(json.dumps(read_with_session(*sys.argv[1:5])))


if __name__ == "__main__":
    main()
