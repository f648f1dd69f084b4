"""python-etcd 0.4.5 (a v2 API client from PyPI) against a server with --enable-v2.

Usage: python_etcd_smoke.py HOST PORT. Prints "all checks passed" when every check held;
any failed check raises. Run by tests/python_etcd.rs; works against etcd 3.4.23 the same way.
"""
import sys
import threading
import time

import etcd

host, port = sys.argv[1], int(sys.argv[2])
c = etcd.Client(host=host, port=port, read_timeout=10)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what)


# Keys.
r = c.write("/smoke/a", "1")
check(r.value == "1" and r.newKey, "write creates a key")
first = r.modifiedIndex
r = c.write("/smoke/a", "2")
check(r.value == "2" and not r.newKey and r._prev_node.value == "1", "write replaces, prevNode kept")
check(c.read("/smoke/a").value == "2", "read returns the value")
try:
    c.read("/smoke/none")
    check(False, "a missing key raises")
except etcd.EtcdKeyNotFound as e:
    check("Key not found" in str(e), "a missing key raises EtcdKeyNotFound")

# Directories.
c.write("/smoke/dir", None, dir=True)
c.write("/smoke/dir/x", "x")
c.write("/smoke/dir/y", "y")
c.write("/smoke/dir/sub/z", "z")
r = c.read("/smoke/dir", recursive=True, sorted=True)
keys = [n.key for n in r.leaves]
check(keys == ["/smoke/dir/sub/z", "/smoke/dir/x", "/smoke/dir/y"], "recursive listing: %s" % keys)
try:
    c.delete("/smoke/dir", dir=True)
    check(False, "deleting a full dir without recursive raises")
except etcd.EtcdDirNotEmpty:
    check(True, "deleting a full dir without recursive raises EtcdDirNotEmpty")
c.delete("/smoke/dir", recursive=True)
try:
    c.read("/smoke/dir")
    check(False, "the dir is gone")
except etcd.EtcdKeyNotFound:
    check(True, "a recursive delete removes the dir")

# Compare-and-swap, compare-and-delete, prevExist.
r = c.test_and_set("/smoke/a", "3", "2")
check(r.value == "3", "test_and_set on the right value")
try:
    c.test_and_set("/smoke/a", "4", "2")
    check(False, "test_and_set on a wrong value raises")
except ValueError as e:
    check("Compare failed" in str(e), "test_and_set on a wrong value raises: %s" % e)
r = c.write("/smoke/a", "5", prevIndex=r.modifiedIndex)
check(r.value == "5", "write with prevIndex")
try:
    c.write("/smoke/a", "x", prevExist=False)
    check(False, "create on an existing key raises")
except etcd.EtcdAlreadyExist:
    check(True, "create on an existing key raises EtcdAlreadyExist")
try:
    c.delete("/smoke/a", prevValue="nope")
    check(False, "compare-and-delete on a wrong value raises")
except ValueError:
    check(True, "compare-and-delete on a wrong value raises")
c.delete("/smoke/a", prevValue="5")
check("/smoke/a" not in [n.key for n in c.read("/smoke", recursive=True).leaves], "compare-and-delete removes")

# In-order keys.
a = c.write("/smoke/queue", "job1", append=True)
b = c.write("/smoke/queue", "job2", append=True)
check(int(a.key.split("/")[-1]) < int(b.key.split("/")[-1]), "in-order keys grow")
jobs = [n.value for n in c.read("/smoke/queue", sorted=True).children]
check(jobs == ["job1", "job2"], "in-order keys list in order: %s" % jobs)

# TTLs: set, refresh, and expiry seen by a watch.
r = c.write("/smoke/ttl", "t", ttl=100)
check(r.ttl is not None and 0 < r.ttl <= 100, "a key with a TTL shows it: %s" % r.ttl)
r = c.refresh("/smoke/ttl", ttl=200)
check(r.value == "t" and 100 < r.ttl <= 200, "refresh keeps the value, takes the new TTL")
r = c.write("/smoke/short", "s", ttl=1)
e = c.watch("/smoke/short", index=r.modifiedIndex + 1, timeout=10)
check(e.action == "expire" and e.key == "/smoke/short", "a 1 s TTL expires: %s" % e.action)

# Watches: a long poll answered by another client's write, a recursive one, from history.
got = {}


def waiter():
    got["e"] = c.watch("/smoke/w", timeout=10)


t = threading.Thread(target=waiter)
t.start()
# The watch is open once the member counts it (python-etcd has no callback for that).
while True:
    stats = c.api_execute("/v2/stats/store", c._MGET).data.decode()
    if '"watchers":0' not in stats:
        break
    time.sleep(0.05)  # the poll's interval, not a stand-in for the condition
c.write("/smoke/w", "fired")
t.join(15)
check(got.get("e") is not None and got["e"].value == "fired", "a waiting watch fires")
r = c.write("/smoke/rw/deep/k", "v")
e = c.watch("/smoke/rw", recursive=True, index=r.modifiedIndex, timeout=10)
check(e.key == "/smoke/rw/deep/k", "a recursive watch from an index sees a write below")
e = c.watch("/smoke/a", index=first, timeout=10)
check(e.value == "1", "a watch from an old index answers from the history")

# Members and machines.
check(len(c.machines) >= 1, "machines lists the cluster: %s" % c.machines)
check(c.leader is not None and "peerURLs" in c.leader, "leader is known")
check(len(c.members) >= 1, "members lists the cluster")

print("all checks passed")
