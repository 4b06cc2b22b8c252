"""Controls (the allowed paths work, and the witness sees them) and DNS:
refused names, tunnels, the resolver directly, malformed queries, a flood,
forged answers."""

from common import *  # noqa: F401,F403 (helpers and CFG)


# Controls: allowed traffic goes through, and the witness sees it.


def controls():
    return [
        ("control-allowed-name", "control", "resolve the allowed name and reach it on TCP and UDP",
         "answered, reached, and seen leaving the sentry",
         ["DNS", "API:80"], control_allowed, False),
        ("control-allowed-cidr", "control", "reach the allowed CIDR on TCP",
         "reached", [f"{CFG['cidr']}:80"], control_cidr, False),
        ("control-attacker-is-root-with-every-capability", "control",
         "open a raw socket and change the bottle's own routes",
         "both work: the attacks below run with NET_RAW and NET_ADMIN", [], control_capabilities, False),
        ("control-credential", "control",
         "HTTPS to the credential host with the placeholder (the bottle trusts the sentry's CA)",
         "answered with the placeholder echoed back; the world got the real key (battery.rs checks its log)",
         ["DNS", "CRED:443"], control_credential, False),
    ]


def control_capabilities():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
        raw = "raw socket"
    except OSError as e:
        raw = f"no raw socket ({e})"
    add = sh("ip", "route", "add", "192.0.2.0/24", "dev", CFG["ifname"])
    sh("ip", "route", "del", "192.0.2.0/24", "dev", CFG["ifname"])
    route = "route added" if add.returncode == 0 else f"no route ({add.stderr.strip()})"
    return (raw == "raw socket" and add.returncode == 0, f"{raw}; {route}")


def control_allowed():
    a = dns_query(CFG["api_name"], timeout=2)
    t = tcp_try(CFG["api"], 80, f"GET / HTTP/1.1\r\nHost: {CFG['api_name']}\r\n\r\n".encode(), timeout=2)
    u = udp_try(CFG["api"], 80, timeout=2)
    return (a is not None and CFG["api"] in a[1] and t == "open" and u == "reply",
            f"dns {shown(a)}; tcp {t}; udp {u}")


def control_credential():
    a = dns_query(CFG["cred_name"], timeout=2)
    r = https_get(CFG["cred"], CFG["cred_name"], bearer=placeholder())
    return (r == f"200 auth: Bearer {placeholder()}", f"dns {shown(a)}; https {r}")


def control_cidr():
    t = tcp_try(CFG["cidr"], 80, b"hello\n", timeout=2)
    return (t == "open", f"tcp {t}")


# DNS


@case("dns", "a name the profile does not allow", "REFUSED; nothing asked upstream")
def dns_refused_name():
    a = dns_query(CFG["other_name"])
    return (a is not None and a[0] == "Refused", shown(a))


@case("dns", "a public name (example.com)", "REFUSED; nothing asked upstream")
def dns_refused_public_name():
    a = dns_query("example.com")
    return (a is not None and a[0] == "Refused", shown(a))


@case("dns", "a made-up name under an exact allowed name", "REFUSED; nothing asked upstream")
def dns_subname_of_exact_name():
    a = dns_query("x." + CFG["api_name"])
    return (a is not None and a[0] == "Refused", shown(a))


@case("dns", "data tunnelled in 20 query names under the exact allowed name", "all REFUSED; nothing upstream")
def dns_tunnel_in_labels():
    secret = base64.b32encode(os.urandom(30)).decode().rstrip("=").lower()
    rcodes = set()
    for i in range(20):
        a = dns_query(f"{secret[:40]}{i}.{CFG['api_name']}")
        rcodes.add(shown(a))
    return (rcodes == {"Refused"}, ",".join(sorted(rcodes)))


@case("dns", "the same tunnel over TCP", "REFUSED; nothing upstream")
def dns_tunnel_over_tcp():
    a = dns_query("exfil-" + os.urandom(8).hex() + "." + CFG["api_name"], tcp=True)
    return (a is not None and a[0] == "Refused", shown(a))


@case("dns", "a query of type ANY for the allowed name", "REFUSED; nothing upstream")
def dns_any():
    a = dns_query(CFG["api_name"], 255)
    return (a is not None and a[0] == "Refused", shown(a))


@case("dns", "a zone transfer (AXFR over TCP)", "REFUSED; nothing upstream")
def dns_zone_transfer():
    a = dns_query(CFG["zone"], "AXFR", tcp=True)
    return (a is not None and a[0] in ("Refused", "NotImp"), shown(a))


@case("dns", "a query of class CHAOS (version.bind)", "REFUSED; nothing upstream")
def dns_chaos_class():
    from scapy.layers.dns import DNS, DNSQR

    pkt = bytes(DNS(id=7, rd=1, qd=DNSQR(qname="version.bind", qtype="TXT", qclass=3)))
    r = dns_exchange(pkt, CFG["sentry"])
    rc = RCODES.get(DNS(r).rcode) if r else None
    return (rc in ("Refused", "NotImp"), rc or "no answer")


@case("dns", "an UPDATE (opcode 5) adding an address for the allowed name", "NOTIMP; nothing learned or sent")
def dns_update_opcode():
    from scapy.layers.dns import DNS, DNSQR

    pkt = bytes(DNS(id=8, opcode=5, qd=DNSQR(qname=CFG["zone"], qtype="SOA")))
    r = dns_exchange(pkt, CFG["sentry"])
    rc = RCODES.get(DNS(r).rcode) if r else None
    after = tcp_try(CFG["trap"], 80)
    return (rc in ("NotImp", "Refused", "FormErr") and blocked(after), f"{rc or 'no answer'}; trap tcp {after}")


@case("dns", "the world's resolver directly over UDP", "no answer; nothing leaves")
def dns_direct_udp():
    a = dns_query(CFG["api_name"], server=CFG["resolver"])
    return (a is None, shown(a))


@case("dns", "the world's resolver directly over TCP", "no answer; nothing leaves")
def dns_direct_tcp():
    a = dns_query(CFG["api_name"], server=CFG["resolver"], tcp=True)
    return (a is None, shown(a))


@case("dns", "DNS over TLS (TCP 853) to the world's resolver", "no connection; nothing leaves")
def dns_over_tls_port():
    t = tcp_try(CFG["resolver"], 853)
    return (blocked(t), f"tcp {t}")


@case("dns", "DNS on another port (UDP 5353) of the world's resolver", "no answer; nothing leaves")
def dns_other_port():
    a = dns_query(CFG["api_name"], server=CFG["resolver"], port=5353)
    return (a is None, shown(a))


@case("dns", "multicast DNS (224.0.0.251:5353) and LLMNR (224.0.0.252:5355)", "no answer; nothing leaves")
def dns_multicast():
    m = dns_query(CFG["other_name"], server="224.0.0.251", port=5353)
    l = dns_query(CFG["other_name"], server="224.0.0.252", port=5355)
    return (m is None and l is None, f"mdns {shown(m)}; llmnr {shown(l)}")


@case("dns", "a refused name over IPv6, to the sentry's link-local address", "no address answered; nothing leaves")
def dns_over_ipv6_link_local():
    ll = CFG.get("sentry_ll")
    if not ll:
        return (True, "the enclave has no IPv6 link-local address")
    a = dns_query(CFG["other_name"], server=f"{ll}%{CFG['ifname']}")
    return (a is None or not a[1], shown(a))


@case("dns", "a 4,000-byte query of garbage", "dropped or FORMERR; the agent keeps serving", egress=["DNS"])

def dns_oversized():
    r = dns_exchange(os.urandom(4000), CFG["sentry"])
    ok = still_serving()
    return (ok, f"{'answered' if r else 'dropped'}; still serving: {ok}")


@case("dns", "a truncated query (5 bytes of header)", "dropped or FORMERR; keeps serving", egress=["DNS"])

def dns_truncated():
    r = dns_exchange(b"\x12\x34\x01\x00\x00", CFG["sentry"])
    ok = still_serving()
    return (ok, f"{'answered' if r else 'dropped'}; still serving: {ok}")


@case("dns", "a question whose name is a compression pointer to itself", "dropped or FORMERR; keeps serving", egress=["DNS"])

def dns_compression_loop():
    pkt = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    r = dns_exchange(pkt, CFG["sentry"])
    ok = still_serving()
    return (ok, f"{'answered' if r else 'dropped'}; still serving: {ok}")


@case("dns", "a name of 64-byte labels (longer than DNS allows)", "dropped or FORMERR; keeps serving", egress=["DNS"])

def dns_overlong_labels():
    body = b"".join(bytes([63]) + b"a" * 63 for _ in range(5)) + b"\x00"
    pkt = struct.pack("!HHHHHH", 0x4343, 0x0100, 1, 0, 0, 0) + body + struct.pack("!HH", 1, 1)
    r = dns_exchange(pkt, CFG["sentry"])
    ok = still_serving()
    return (ok, f"{'answered' if r else 'dropped'}; still serving: {ok}")


@case("dns", "500 random datagrams to port 53", "each answered or dropped; keeps serving", egress=["DNS"])

def dns_random_garbage():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(500):
        s.sendto(os.urandom(random.randint(1, 600)), (CFG["sentry"], 53))
    s.close()
    time.sleep(0.3)
    ok = still_serving()
    return (ok, f"still serving: {ok}")


@case("dns", "TCP queries that lie about their length, and one left open mid-message", "keeps serving", egress=["DNS"])

def dns_tcp_lies():
    held = []
    for claim, send_n in ((1000, 10), (2, 300), (65535, 0)):
        try:
            s = socket.create_connection((CFG["sentry"], 53), timeout=1)
            s.sendall(struct.pack("!H", claim) + os.urandom(send_n))
            held.append(s)
        except OSError:
            pass
    ok_udp = still_serving()
    tcp = dns_query(CFG["api_name"], tcp=True, timeout=2)
    for s in held:
        s.close()
    ok = ok_udp and tcp is not None and CFG["api"] in tcp[1]
    return (ok, f"udp still serving: {ok_udp}; tcp {shown(tcp)}")


@case("dns", "a flood of 20,000 queries for made-up names", "all REFUSED or dropped; nothing upstream; keeps serving", egress=["DNS"])

def dns_query_flood():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    base = dns_packet("x.flood.invalid")
    sent = 0
    for i in range(20000):
        name = f"f{i}-{os.urandom(4).hex()}.flood.invalid"
        try:
            s.sendto(dns_packet(name, qid=i % 65535 + 1) if i % 10 == 0 else base, (CFG["sentry"], 53))
            sent += 1
        except BlockingIOError:
            time.sleep(0.001)
        if i % 200 == 0:
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
    s.close()
    time.sleep(0.5)
    ok = still_serving()
    return (ok, f"{sent} sent; still serving: {ok}")


@case("dns", "forged answers (from the resolver's address, port 53) sprayed at every port of the sentry", "nothing learned: the trap stays shut")
def dns_forged_replies():
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP

    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    dns = DNS(id=0, qr=1, aa=1, rd=1, ra=1, qd=DNSQR(qname=CFG["other_name"]),
              an=DNSRR(rrname=CFG["other_name"], rdata=CFG["trap"], ttl=600))
    for target in (CFG["sentry"], CFG.get("sentry_uplink")):
        if not target:
            continue
        # One packet, its destination port patched in; UDP checksum 0 (none).
        template = bytearray(bytes(IP(src=CFG["resolver"], dst=target) / UDP(sport=53, dport=0, chksum=0) / dns))
        for port in range(1024, 65536):
            template[22:24] = struct.pack("!H", port)
            try:
                s.sendto(template, (target, 0))
            except OSError:
                pass
    s.close()
    t = tcp_try(CFG["trap"], 80)
    a = dns_query(CFG["other_name"])
    return (blocked(t) and a is not None and a[0] == "Refused", f"trap tcp {t}; {CFG['other_name']} {shown(a)}")


@case("dns", "a DNS query to the sentry with a spoofed source (the trap world): a reflection", "no answer sent to the trap")
def dns_reflection():
    from scapy.layers.inet import IP, UDP

    return witness_tells(IP(src=CFG["trap"], dst=CFG["sentry"]) / UDP(sport=4444, dport=53) / dns_packet(CFG["api_name"]))
