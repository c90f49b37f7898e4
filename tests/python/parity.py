"""Comparison of `OnlineResponse.to_dict()` results (stdlib only)."""
import json


def _same(local, remote):
    if local == remote:
        return True
    # Feast's remote client cannot tell a Json feature (sent as its text, as the
    # Python feature server sends it) from a string: it keeps the text, while the local
    # store parses it. Equal once parsed.
    if isinstance(remote, str) and isinstance(local, (dict, list)):
        try:
            return json.loads(remote) == local
        except ValueError:
            return False
    if isinstance(local, list) and isinstance(remote, list) and len(local) == len(remote):
        return all(_same(a, b) for a, b in zip(local, remote))
    return False


def compare(local: dict, remote: dict) -> list:
    """Differences between two to_dict() results (column sets, then values per row)."""
    diffs = []
    if set(local) != set(remote):
        return [f"columns differ: local {sorted(local)} remote {sorted(remote)}"]
    for name in sorted(local):
        a, b = local[name], remote[name]
        if len(a) != len(b):
            diffs.append(f"{name}: {len(a)} rows locally, {len(b)} remotely")
            continue
        for i, (x, y) in enumerate(zip(a, b)):
            if not _same(x, y):
                diffs.append(f"{name}[{i}]: local {x!r} remote {y!r}")
    return diffs
