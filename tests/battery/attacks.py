#!/usr/bin/env python3
"""rbm's escape battery: what a hostile bottle tries, one named case each.

Runs in the attacker image (Debian with scapy, images/attacker),
as root with every capability (`podman exec --privileged`): stronger than
any real bottle, which has neither NET_ADMIN nor NET_RAW.

  attacks.py run CONFIG_JSON      in the bottle: every case in turn
  attacks.py witness UPLINK_NET   in the sentry's network namespace
  attacks.py count FILE TEXT...   how often each TEXT is in FILE (the
                                  witness's capture)

`run` prints one JSON line per case: id, group, tries, expected, observed,
ok (what the bottle saw was the blocked outcome), the case's time window
(t0, t1), and `egress`: what may leave the sentry on its uplink during that
window ("IP:PORT" anything to it, "IP:PORT/empty" TCP without payload).
`witness` reroutes the link-local range to a trap world and prints every
packet the sentry sends out of its uplink (tcpdump), which
tests/tests/battery.rs lays over the windows: anything else that left is
an escape, whatever the bottle saw.

Network safety: every address here is the test's own: its enclave and
uplink subnets and the worlds on them; link-local destinations are routed
to the trap world by the witness before any case runs.
"""

import json
import subprocess
import sys
import time

import common
from common import *  # noqa: F401,F403 (helpers and CFG)
# The cases register themselves in common.CASES, in this order.
import cases_dns
import cases_access  # noqa: F401
import cases_tricks  # noqa: F401
import cases_names  # noqa: F401


def restore_network():
    """Puts the bottle's own network back as the launcher made it (a case
    that changed routes, addresses or its MAC may have left it changed)."""
    ifname = CFG["ifname"]
    for line in sh("ip", "route", "show", "default").stdout.splitlines():
        if f"via {CFG['sentry']} " not in line + " ":
            sh("ip", "route", "del", *line.split())
    if "default" not in sh("ip", "route", "show", "default").stdout:
        sh("ip", "route", "add", "default", "via", CFG["sentry"], "dev", ifname)


def healthy():
    """The bottle's allowed path still works: a case that broke it proves nothing."""
    return tcp_try(CFG["cidr"], 80, b"GET / HTTP/1.0\r\n\r\n", timeout=2) == "open"


def run(config):
    CFG.update(config)
    cases = cases_dns.controls() + CASES
    only = set(CFG.get("only") or [])
    for cid, group, tries, expected, egress, fn, limit in cases:
        if only and cid not in only:
            continue
        t0 = now()
        try:
            result = fn()
            ok, observed = result[:2]
            if len(result) > 2:
                egress = result[2]
        except Exception as e:  # a broken case is a failed case, with its reason
            ok, observed = False, f"error: {type(e).__name__}: {e}"
        restore_network()
        if not healthy():
            ok, observed = False, observed + "; the bottle's allowed path no longer works, so this proves nothing"
        egress = list(egress) + [f"{CFG['cidr']}:80"]
        t1 = now()
        print(json.dumps({
            "id": cid, "group": group, "tries": tries, "expected": expected,
            "observed": observed, "ok": bool(ok), "limit": limit, "t0": t0, "t1": t1,
            "egress": [e.replace("API", CFG["api"]).replace("CRED", CFG["cred"]).replace("FRONT", CFG["front"])
                       .replace("RULED", CFG["ruled"])
                       .replace("SHORT", CFG["short"])
                       .replace("DNS", f"{CFG['resolver']}:53") for e in egress],
        }), flush=True)
        time.sleep(GAP)
    print(json.dumps({"done": True}), flush=True)


def stream(ip, port, seconds, every=0.01):
    """Lifecycle cases: a UDP datagram to ip:port every `every` seconds and
    a TCP connection every 100 ms, for `seconds`; prints what answered and
    when."""
    end = now() + seconds
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    sent = replies = tcp_open = 0
    last = None
    next_tcp = now()
    while now() < end:
        try:
            s.sendto(b"rbm battery stream %d" % sent, (ip, port))
            sent += 1
        except OSError:
            pass
        try:
            while s.recv(4096):
                replies += 1
                last = now()
        except OSError:
            pass
        if now() >= next_tcp:
            next_tcp = now() + 0.1
            if tcp_try(ip, port, timeout=0.05) == "open":
                tcp_open += 1
                last = now()
        time.sleep(every)
    print(json.dumps({"sent": sent, "udp_replies": replies, "tcp_open": tcp_open, "last_reply": last}), flush=True)


PCAP = "/tmp/uplink.pcap"


def witness(uplink_net, trap, reroute):
    """In the sentry's network namespace: route `reroute` to the trap, then
    print every packet leaving the uplink interface (and keep them whole in
    PCAP)."""
    prefix = uplink_net.rsplit(".", 1)[0] + "."
    out = sh("ip", "-o", "-4", "addr", "show").stdout
    ifname = addr = None
    for line in out.splitlines():
        f = line.split()
        if f[3].startswith(prefix):
            ifname, addr = f[1], f[3].split("/")[0]
    if not ifname:
        sys.exit(f"witness: no interface in {uplink_net}:\n{out}")
    for net in reroute:
        r = sh("ip", "route", "replace", net, "via", trap, "dev", ifname)
        if r.returncode:
            sys.exit(f"witness: cannot route {net} to the trap: {r.stderr}")
    enclave_ll = None
    for line in sh("ip", "-o", "-6", "addr", "show", "scope", "link").stdout.splitlines():
        f = line.split()
        if f[1] != ifname and f[1] != "lo":
            enclave_ll = f[3].split("/")[0]
    # Every byte as well, for battery.rs to look for the real credential in.
    subprocess.Popen(["tcpdump", "-i", ifname, "-Q", "out", "-n", "-U", "-s", "0", "-Z", "root", "-w", PCAP, "not arp"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(json.dumps({"ready": True, "ifname": ifname, "addr": addr, "enclave_ll": enclave_ll}), flush=True)
    os.execvp("tcpdump", ["tcpdump", "-i", ifname, "-Q", "out", "-n", "-q", "-tt", "-l", "-U", "not arp"])


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "run":
        run(json.loads(sys.argv[2]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "witness":
        witness(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) in (5, 6) and sys.argv[1] == "stream":
        stream(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), *(float(a) for a in sys.argv[5:]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "count":
        data = open(sys.argv[2], "rb").read()
        print(json.dumps({"bytes": len(data), "count": [data.count(t.encode()) for t in sys.argv[3:]]}))
    elif len(sys.argv) == 2 and sys.argv[1] == "list":
        for cid, group, tries, expected, _, _, _ in CASES:
            print(f"{group}\t{cid}\t{tries}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
