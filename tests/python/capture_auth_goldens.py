"""Sends every case of the `auth` fixture's cases.json to a server, with the token
each case's user gets from the test OIDC issuer, and writes what it answered.

Usage: capture_auth_goldens.py BASE_URL CASES_JSON ISSUER_JSON OUT_JSON
(ISSUER_JSON: the line test_oidc_issuer prints.)
"""

import json
import re
import sys

import requests


def issuer_token(issuer: dict, user: str) -> str:
    """A token from the issuer's password grant, as the Feast SDK logs in."""
    disco = requests.get(issuer["discovery_url"], verify=issuer["ca_cert"], timeout=10).json()
    resp = requests.post(
        disco["token_endpoint"],
        data={
            "grant_type": "password",
            "client_id": issuer["client_id"],
            "client_secret": issuer["client_secret"],
            "username": user,
            "password": f"{user}pw",
        },
        verify=issuer["ca_cert"],
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()["access_token"]


def authorization(template, issuer: dict):
    """The Authorization header of a case: `{user}` stands for that user's token."""
    if template is None:
        return None
    return re.sub(r"\{(\w+)\}", lambda m: issuer_token(issuer, m.group(1)), template)


def main() -> None:
    base, cases_path, issuer_line, out_path = sys.argv[1:5]
    issuer = json.loads(issuer_line)
    cases = json.load(open(cases_path))
    answers = {}
    for case in cases:
        headers = {}
        value = authorization(case.get("authorization"), issuer)
        if value is not None:
            headers["Authorization"] = value
        data = None
        if "body" in case:
            data = json.dumps(case["body"])
            headers["Content-Type"] = "application/json"
        elif "raw_body" in case:
            data = case["raw_body"]
            headers["Content-Type"] = "application/json"
        resp = requests.request(case["method"], base + case["path"], data=data, headers=headers, timeout=60)
        answers[case["name"]] = {"status": resp.status_code, "body": resp.text}
        print(f"{case['name']}: {resp.status_code}")
    with open(out_path, "w") as f:
        json.dump(answers, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
