"""Direct access (addresses never learned, metadata, the host, ports
outside a name's ports, a TTL run out) and the sentry itself (scans, its
other addresses, the control socket, relays)."""

from common import *  # noqa: F401,F403 (helpers and CFG)


# Direct access


@case("direct", "TCP to an address never learned (the trap world)", "no connection; nothing leaves", )
def tcp_unlearned_address():
    t = tcp_try(CFG["trap"], 80)
    return (blocked(t), f"tcp {t}")


@case("direct", "UDP to an address never learned", "no reply; nothing leaves")
def udp_unlearned_address():
    u = udp_try(CFG["trap"], 80)
    return (blocked(u), f"udp {u}")


@case("direct", "ICMP echo to an address never learned", "no reply; nothing leaves")
def icmp_unlearned_address():
    p = ping(CFG["trap"])
    return (blocked(p), f"ping {p}")


@case("direct", "SYNs to ports 1-1024 of the trap world", "none answered; nothing leaves")
def tcp_port_sweep_unlearned():
    from scapy.layers.inet import IP, TCP

    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for port in range(1, 1025):
        s.sendto(syn_bytes(CFG["bottle"], CFG["trap"], 40000, port), (CFG["trap"], 0))
    s.close()
    time.sleep(SHUT)
    return (True, "1024 SYNs sent (the witness tells)")


@case("direct", "the cloud metadata address 169.254.169.254 (TCP 80, ICMP)", "nothing; nothing leaves")
def cloud_metadata():
    t = tcp_try("169.254.169.254", 80)
    p = ping("169.254.169.254", 1)
    return (blocked(t) and blocked(p), f"tcp {t}; ping {p}")


@case("direct", "the host through its uplink bridge address (TCP 22, 80; ICMP)", "nothing; nothing leaves")
def host_bridge_address():
    gw = CFG["uplink_gateway"]
    t22, t80, p = tcp_try(gw, 22), tcp_try(gw, 80), ping(gw, 1)
    return (blocked(t22) and blocked(t80) and blocked(p), f"tcp22 {t22}; tcp80 {t80}; ping {p}")


@case("direct", "the host at 169.254.1.2 (rootless Podman's host.containers.internal)", "nothing; nothing leaves")
def host_containers_internal():
    t22, t80 = tcp_try("169.254.1.2", 22), tcp_try("169.254.1.2", 80)
    return (blocked(t22) and blocked(t80), f"tcp22 {t22}; tcp80 {t80}")


@case("direct", "a sweep of the whole uplink subnet (TCP 80 and ICMP)", "nothing but the allowed hosts; nothing else leaves",
      egress=())
def uplink_subnet_sweep():
    from scapy.layers.inet import ICMP, IP, TCP

    allowed = {CFG["api"], CFG["cidr"], CFG["ports"], CFG["short"], CFG["cred"], CFG["front"]}
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for host in range(1, 255):
        ip = f"{CFG['uplink_prefix']}.{host}"
        if ip in allowed:
            continue
        s.sendto(bytes(IP(dst=ip) / TCP(sport=40001, dport=80, flags="S")), (ip, 0))
        s.sendto(bytes(IP(dst=ip) / ICMP()), (ip, 0))
    s.close()
    time.sleep(SHUT)
    return (True, "508 probes sent (the witness tells)")


@case("direct", "a name allowed only on 443, on port 80", "no connection; nothing leaves", egress=["DNS"])

def port_restricted_name_other_port():
    a = dns_query(CFG["ports_name"], timeout=2)
    t = tcp_try(CFG["ports"], 80)
    return (a is not None and CFG["ports"] in a[1] and blocked(t), f"dns {shown(a)}; tcp80 {t}")


@case("direct", "a name allowed only on 443, over UDP to port 80", "no reply; nothing leaves")
def port_restricted_name_udp():
    u = udp_try(CFG["ports"], 80)
    return (blocked(u), f"udp80 {u}")


@case("direct", "a learned address nobody connected to, after its TTL ran out",
      "no connection after the TTL; nothing leaves", egress=["DNS"])
def learned_address_after_ttl():
    a = dns_query(CFG["short_name"], timeout=2)
    learned = a is not None and CFG["short"] in a[1]
    time.sleep(CFG["short_ttl"] + 3.5)
    late = tcp_try(CFG["short"], 80)
    return (learned and blocked(late), f"dns {shown(a)}; after the TTL {late}")


@case("direct", "a learned address connected to at once, after its TTL ran out (a pooled connection's client)",
      "still open: an address in use stays open 5 minutes after its last use (README)", egress=["DNS", "SHORT:80"])
def learned_address_in_use_after_ttl():
    a = dns_query(CFG["short_name"], timeout=2)
    early = tcp_try(CFG["short"], 80, f"GET / HTTP/1.1\r\nHost: {CFG['short_name']}\r\n\r\n".encode(), timeout=2)
    time.sleep(CFG["short_ttl"] + 3.5)
    late = tcp_try(CFG["short"], 80)
    return (early == "open" and late == "open", f"dns {shown(a)}; at once {early}; after the TTL {late}")


@case("direct", "an address next to the allowed CIDR", "no connection; nothing leaves")
def beside_the_allowed_cidr():
    t = tcp_try(CFG["beside_cidr"], 80)
    return (blocked(t), f"tcp {t}")


# The sentry itself


@case("sentry", "a TCP SYN scan of all 65,535 ports of the sentry's enclave address", "only 53 answers")
def sentry_tcp_scan():
    from scapy.all import AsyncSniffer
    from scapy.layers.inet import IP, TCP

    sniffer = AsyncSniffer(iface=CFG["ifname"], filter=f"tcp and src host {CFG['sentry']} and tcp[13] & 18 == 18", store=True)
    sniffer.start()
    time.sleep(0.3)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for port in range(1, 65536):
        s.sendto(syn_bytes(CFG["bottle"], CFG["sentry"], 41000, port), (CFG["sentry"], 0))
    s.close()
    time.sleep(1.5)
    got = sniffer.stop()
    open_ports = sorted({p[TCP].sport for p in got})
    return (open_ports == [53], f"open: {open_ports}")


@case("sentry", "UDP to the sentry's likely ports (DHCP, NTP, SNMP, mDNS, 8080, 15443, ...)", "only 53 answers", egress=["DNS"])
def sentry_udp_ports():
    answered = [p for p in (53, 67, 68, 69, 123, 137, 161, 500, 1900, 4789, 5353, 8080, 15443, 51820)
                if udp_try(CFG["sentry"], p, dns_packet(CFG["api_name"]), timeout=0.4) == "reply"]
    return (answered == [53], f"answered: {answered}")


@case("sentry", "the credential proxy's port (15443) directly, without the redirect", "no connection")
def sentry_proxy_port_direct():
    t = tcp_send_parts(CFG["sentry"], 15443, [client_hello(CFG["api_name"])])
    return (blocked(t), f"tcp {t}")


@case("sentry", "the sentry's uplink address, through the sentry (TCP 53, 80, 15443; UDP 53)", "nothing")
def sentry_uplink_address():
    up = CFG.get("sentry_uplink")
    res = [tcp_try(up, p) for p in (53, 80, 15443)] + [udp_try(up, 53, dns_packet(CFG["api_name"]))]
    return (all(blocked(r) for r in res), f"{res}")


@case("sentry", "the sentry's other enclave address (the one Podman gives it): TCP 22, 53, 80, 15443, UDP 53", "nothing answers a query; no connection")
def sentry_link_address():
    link = CFG["sentry_link"]
    tcp = [tcp_try(link, p) for p in (22, 53, 80, 15443)]
    udp = udp_try(link, 53, dns_packet(CFG["api_name"]))
    return (all(blocked(r) for r in tcp) and blocked(udp), f"tcp {tcp}; udp53 {udp}")


@case("sentry", "the control socket: any rbm socket visible from the bottle", "none")
def sentry_control_socket():
    with open("/proc/net/unix") as f:
        listed = [l for l in f.read().splitlines() if "rbm" in l]
    paths = [p for p in ("/run/rbm", "/run/rbm/agent.sock", "/rbm-agent") if os.path.exists(p)]
    return (not listed and not paths, f"sockets {len(listed)}; paths {paths}")


@case("sentry", "the sentry as a relay to its own loopback (127.0.0.1 via the sentry)", "nothing")
def sentry_loopback_relay():
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from scapy.all import conf, getmacbyip, sendp

    conf.verb = 0
    mac = getmacbyip(CFG["sentry"])
    sendp(Ether(dst=mac) / IP(src=CFG["bottle"], dst="127.0.0.1") / TCP(dport=53, flags="S"), iface=CFG["ifname"])
    r = tcp_try(CFG["sentry"], 53)
    return (r == "open", f"sent; DNS over TCP still {r}")


@case("sentry", "an ICMP redirect telling the sentry to route the trap through the bottle", "no effect: the trap stays shut")
def sentry_icmp_redirect():
    from scapy.layers.inet import ICMP, IP, UDP

    send(IP(src=CFG["sentry"], dst=CFG["sentry"]) / ICMP(type=5, code=1, gw=CFG["bottle"]) / IP(src=CFG["sentry"], dst=CFG["trap"]) / UDP())
    t = tcp_try(CFG["trap"], 80)
    return (blocked(t), f"trap tcp {t}")


@case("access", "an allowed name that resolves to an address of the Podman host (the gateway of another network on it), then TCP and UDP to it",
      "the address is withheld from the answer and stays closed; nothing reaches the host", egress=["DNS"])
def allowed_name_resolving_to_the_podman_host():
    answer = dns_query(CFG["host_name"], timeout=2)
    gateway = CFG["neighbour_gateway"]
    t = tcp_try(gateway, 22)
    u = udp_try(gateway, 53)
    withheld = answer is not None and gateway not in answer[1]
    return (withheld and blocked(t) and u == "silent", f"dns {shown(answer)}; tcp {t}; udp {u}")
