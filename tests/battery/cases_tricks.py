"""Network tricks (routes, addresses, ARP, spoofed sources, raw
protocols, fragments, TTL, IPv6) and forged connection state."""

from common import *  # noqa: F401,F403 (helpers and CFG)


# Network tricks


@case("tricks", "a default route through the (absent) host bridge address of the enclave", "nothing reaches the trap")
def route_via_enclave_bridge():
    gw = CFG["enclave_prefix"] + ".1"
    sh("ip", "route", "del", "default")
    sh("ip", "route", "add", "default", "via", gw, "dev", CFG["ifname"], "onlink")
    t = tcp_try(CFG["trap"], 80)
    return (blocked(t), f"tcp {t}")


@case("tricks", "the uplink subnet declared on-link (ARP for the trap on the enclave)", "nothing reaches the trap")
def uplink_on_link():
    net = CFG["uplink_prefix"] + ".0/24"
    return trap_after(["route", "add", net, "dev", CFG["ifname"]], ["route", "del", net, "dev", CFG["ifname"]])


@case("tricks", "an uplink address on the bottle's own interface", "nothing reaches the trap")
def uplink_address_on_bottle():
    addr = CFG["uplink_prefix"] + ".77/24"
    return trap_after(["addr", "add", addr, "dev", CFG["ifname"]], ["addr", "del", addr, "dev", CFG["ifname"]])


@case("tricks", "another enclave address for the bottle (10.250.N.99)", "nothing reaches the trap")
def other_enclave_address():
    addr = CFG["enclave_prefix"] + ".99"
    sh("ip", "addr", "add", addr + "/24", "dev", CFG["ifname"])
    from scapy.layers.inet import IP, TCP

    send(IP(src=addr, dst=CFG["trap"]) / TCP(dport=80, flags="S"))
    t = tcp_try(CFG["trap"], 80)
    sh("ip", "addr", "del", addr + "/24", "dev", CFG["ifname"])
    return (blocked(t), f"tcp {t}")


@case("tricks", "a changed MAC address and gratuitous ARP claiming the sentry's address", "nothing reaches the trap; the bottle's own path still works")
def mac_and_arp_spoof():
    from scapy.all import conf, sendp
    from scapy.layers.l2 import ARP, Ether

    conf.verb = 0
    ifname = CFG["ifname"]
    old = open(f"/sys/class/net/{ifname}/address").read().strip()
    sh("ip", "link", "set", ifname, "address", "02:72:62:6d:00:99")
    sendp(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, psrc=CFG["sentry"], hwsrc="02:72:62:6d:00:99", pdst=CFG["sentry"]), iface=ifname, count=2)
    t = tcp_try(CFG["trap"], 80)
    sh("ip", "link", "set", ifname, "address", old)
    sh("ip", "neigh", "flush", "dev", ifname)
    return (blocked(t), f"tcp {t}")


@case("tricks", "spoofed source: the sentry's enclave address", "nothing reaches the trap")
def spoofed_source_sentry():
    from scapy.layers.inet import IP, TCP, UDP

    return witness_tells([IP(src=CFG["sentry"], dst=CFG["trap"]) / TCP(dport=80, flags="S"),
          IP(src=CFG["sentry"], dst=CFG["trap"]) / UDP(dport=80) / b"spoof"])


@case("tricks", "spoofed source: an uplink address (the trap's own)", "nothing reaches the trap")
def spoofed_source_uplink():
    from scapy.layers.inet import IP, TCP, UDP

    return witness_tells([IP(src=CFG["trap"], dst=CFG["trap"]) / TCP(dport=80, flags="S"),
          IP(src=CFG["api"], dst=CFG["trap"]) / UDP(dport=80) / b"spoof"])


@case("tricks", "spoofed source: an address outside every subnet (203.0.113.9)", "nothing reaches the trap")
def spoofed_source_foreign():
    from scapy.layers.inet import IP, TCP

    return witness_tells(IP(src="203.0.113.9", dst=CFG["trap"]) / TCP(dport=80, flags="S"))


def raw_protocol(proto, payload):
    from scapy.layers.inet import IP

    return witness_tells(IP(dst=CFG["trap"], proto=proto) / payload)


@case("tricks", "GRE (IP protocol 47) to the trap", "nothing leaves")
def raw_gre():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import GRE

    return raw_protocol(47, GRE() / IP(dst=CFG["trap"]) / UDP(dport=80))


@case("tricks", "SCTP INIT (IP protocol 132) to the trap", "nothing leaves")
def raw_sctp():
    from scapy.layers.sctp import SCTP, SCTPChunkInit

    return raw_protocol(132, SCTP(sport=5000, dport=80) / SCTPChunkInit())


@case("tricks", "IP-in-IP (protocol 4) to the trap", "nothing leaves")
def raw_ipip():
    from scapy.layers.inet import IP, TCP

    return raw_protocol(4, IP(src=CFG["bottle"], dst=CFG["trap"]) / TCP(dport=80, flags="S"))


@case("tricks", "IP-in-IP and GRE to the sentry itself, wrapping a packet for the trap", "not unwrapped; nothing leaves")
def encapsulated_to_sentry():
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import GRE

    inner = IP(src=CFG["bottle"], dst=CFG["trap"]) / TCP(dport=80, flags="S")
    return witness_tells([IP(dst=CFG["sentry"], proto=4) / inner, IP(dst=CFG["sentry"]) / GRE() / inner,
          IP(dst=CFG["sentry"], proto=41) / (b"\x60" + b"\x00" * 39)])


@case("tricks", "DCCP (33) and UDP-Lite (136) to the trap", "nothing leaves")
def raw_dccp_udplite():
    from scapy.layers.inet import IP

    return witness_tells([IP(dst=CFG["trap"], proto=33) / (b"\x9c\x40\x00\x50" + b"\x00" * 12),
          IP(dst=CFG["trap"], proto=136) / (b"\x9c\x40\x00\x50" + b"\x00" * 4)])


@case("tricks", "a TCP SYN to the trap cut into 8-byte IP fragments", "nothing leaves")
def ip_fragments():
    from scapy.layers.inet import IP, TCP, fragment

    return witness_tells(fragment(IP(dst=CFG["trap"]) / TCP(dport=80, flags="S") / (b"F" * 64), fragsize=8))


@case("tricks", "overlapping fragments that turn the allowed 443 into 80 on the port-restricted host", "nothing reaches port 80")
def overlapping_fragments():
    from scapy.layers.inet import IP, TCP

    ip_id = random.randint(1, 65535)
    good = bytes(TCP(sport=42000, dport=443, flags="S", seq=1) / (b"G" * 16))
    bad = bytes(TCP(sport=42000, dport=80, flags="S", seq=1) / (b"B" * 16))
    return witness_tells([IP(dst=CFG["ports"], id=ip_id, flags="MF", frag=0, proto=6) / good[:16],
          IP(dst=CFG["ports"], id=ip_id, flags="MF", frag=0, proto=6) / bad[:16],
          IP(dst=CFG["ports"], id=ip_id, flags=0, frag=2, proto=6) / good[16:]])


@case("tricks", "a tiny first fragment (8 bytes: ports only) with the flags in the second", "nothing reaches the trap")
def tiny_first_fragment():
    from scapy.layers.inet import IP, TCP

    ip_id = random.randint(1, 65535)
    seg = bytes(TCP(sport=42001, dport=80, flags="S", seq=1))
    return witness_tells([IP(dst=CFG["trap"], id=ip_id, flags="MF", frag=0, proto=6) / seg[:8],
          IP(dst=CFG["trap"], id=ip_id, flags=0, frag=1, proto=6) / seg[8:]])


@case("tricks", "TTL 1 and TTL 2 toward the trap; traceroute over UDP, TCP and ICMP", "no hop beyond the sentry; nothing leaves")
def ttl_tricks():
    from scapy.layers.inet import IP, TCP

    send([IP(dst=CFG["trap"], ttl=t) / TCP(dport=80, flags="S") for t in (1, 2, 3)])
    hops = []
    for mode in ([], ["-T", "-p", "80"], ["-I"]):
        r = sh("traceroute", "-n", "-w", "0.5", "-q", "1", "-m", "4", *mode, CFG["trap"])
        hops += [l.split()[1] for l in r.stdout.splitlines()[1:] if len(l.split()) > 1 and l.split()[1] != "*"]
    beyond = [h for h in hops if h not in (CFG["sentry"], CFG["sentry_link"])]
    return (not beyond, f"hops seen: {sorted(set(hops))}")


@case("tricks", "IPv6 to the sentry's link-local address (TCP 22, 80, 15443)", "nothing answers")
def ipv6_link_local_sentry():
    ll = CFG.get("sentry_ll")
    if not ll:
        return (True, "the enclave has no IPv6")
    res = [tcp_try(f"{ll}%{CFG['ifname']}", p, family=socket.AF_INET6) for p in (22, 80, 15443)]
    return (all(blocked(r) for r in res), f"{res}")


@case("tricks", "IPv6 to the all-routers multicast group, asking to be routed", "nothing leaves")
def ipv6_router_multicast():
    r = udp_try(f"ff02::2%{CFG['ifname']}", 80, timeout=0.5)
    return (blocked(r), f"udp {r}")


# Forged connection state


@case("state", "an unsolicited SYN-ACK to the trap", "nothing leaves")
def unsolicited_syn_ack():
    from scapy.layers.inet import IP, TCP

    return witness_tells(IP(dst=CFG["trap"]) / TCP(sport=43000, dport=80, flags="SA", seq=100, ack=200))


@case("state", "an ACK with data and no connection (conntrack's loose pickup)", "nothing leaves")
def ack_without_connection():
    from scapy.layers.inet import IP, TCP

    return witness_tells(IP(dst=CFG["trap"]) / TCP(sport=43001, dport=80, flags="PA", seq=100, ack=200) / b"GET / HTTP/1.0\r\n\r\n")


@case("state", "FIN, RST and no-flag segments to the trap", "nothing leaves")
def stray_flags():
    from scapy.layers.inet import IP, TCP

    return witness_tells([IP(dst=CFG["trap"]) / TCP(sport=43002, dport=80, flags=f) for f in ("F", "R", "", "FPU")])


@case("state", "an ICMP error quoting a made-up connection to the trap (fake RELATED)", "nothing leaves")
def fake_related_icmp():
    from scapy.layers.inet import ICMP, IP, TCP

    return witness_tells(IP(dst=CFG["trap"]) / ICMP(type=3, code=3) / IP(src=CFG["trap"], dst=CFG["bottle"]) / TCP(sport=80, dport=43003))


@case("state", "a UDP reply-shaped datagram from the trap's port to the trap (fake reply)", "nothing leaves")
def fake_udp_reply():
    from scapy.layers.inet import IP, UDP

    return witness_tells(IP(dst=CFG["trap"]) / UDP(sport=80, dport=80) / b"reply?")
