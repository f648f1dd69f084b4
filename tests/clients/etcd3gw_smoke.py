"""OpenStack's etcd3gw client (PyPI, a client of etcd's JSON gateway) against one endpoint.

Usage: etcd3gw_smoke.py HOST PORT. Prints one line per check and exits non-zero at the first
that fails. The caller bounds the run's wall time; no check waits on a sleep.
"""

import sys

import etcd3gw
from etcd3gw import exceptions
from etcd3gw.utils import _encode


def check(what, got, want):
    if got != want:
        print(f"FAIL {what}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok {what}")


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    c = etcd3gw.client(host=host, port=port, timeout=10)
    check("api path picked from /version", c.api_path, "/v3/")
    check("status has a version", "version" in c.status(), True)
    check("one member", len(c.members()), 1)

    check("put", c.put("smoke/a", "1"), True)
    check("get", c.get("smoke/a"), [b"1"])
    check("get missing", c.get("smoke/none"), [])
    c.put("smoke/b", "2")
    c.put("smoke/c", "3")
    got = sorted(v for v, _ in c.get_prefix("smoke/"))
    check("get_prefix", got, [b"1", b"2", b"3"])
    meta = c.get("smoke/a", metadata=True)[0][1]
    check("metadata key", meta["key"], b"smoke/a")
    check("create", c.create("smoke/a", "x"), False)
    check("create new", c.create("smoke/new", "x"), True)
    check("replace wrong", c.replace("smoke/a", "0", "9"), False)
    check("replace", c.replace("smoke/a", "1", "9"), True)
    check("get replaced", c.get("smoke/a"), [b"9"])
    check("delete", c.delete("smoke/a"), True)
    check("delete again", c.delete("smoke/a"), False)
    check("delete_prefix", c.delete_prefix("smoke/"), True)
    check("prefix gone", c.get_prefix("smoke/"), [])

    txn = c.transaction({
        "compare": [{"key": _encode("t"), "result": "EQUAL",
                     "target": "CREATE", "create_revision": 0}],
        "success": [{"request_put": {"key": _encode("t"),
                                      "value": _encode("v")}}],
        "failure": [],
    })
    check("transaction succeeded", txn.get("succeeded"), True)

    lease = c.lease(ttl=60)
    check("lease granted ttl", lease.ttl() > 50, True)
    c.put("leased", "v", lease=lease)
    check("lease keys", lease.keys(), [b"leased"])
    check("lease refresh", lease.refresh() > 50, True)
    check("lease revoke", lease.revoke(), True)
    check("leased key gone", c.get("leased"), [])

    it, cancel = c.watch_prefix("w/")
    c.put("w/1", "a")
    c.delete("w/1")
    watched = []
    for event in it:
        watched.append((event.get("type", "PUT"), event["kv"]["key"]))
        if len(watched) == 2:
            break
    cancel()
    check("watch events", watched, [("PUT", b"w/1"), ("DELETE", b"w/1")])

    got = []
    it, cancel = c.watch("w/2")
    c.put("w/2", "b")
    for event in it:
        got.append(event["kv"]["value"])
        break
    cancel()
    check("watch one key", got, [b"b"])

    lock = c.lock("smoke-lock", ttl=30)
    check("lock acquire", lock.acquire(), True)
    check("lock held", lock.is_acquired(), True)
    other = c.lock("smoke-lock", ttl=30)
    check("second lock refused", other.acquire(), False)
    check("lock refresh", lock.refresh() > 20, True)
    check("lock release", lock.release(), True)
    check("second lock now", other.acquire(), True)
    other.release()

    try:
        c.post(c.get_url("/kv/range"), json={"key": "!!"})
        check("bad base64 refused", False, True)
    except exceptions.Etcd3Exception as e:
        check("bad base64 refused", "illegal base64" in str(e.detail_text), True)
    print("etcd3gw: all checks passed")


if __name__ == "__main__":
    main()
