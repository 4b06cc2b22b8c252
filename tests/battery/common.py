"""The escape battery's shared parts: the configuration a run is given
(CFG), the helpers every case uses (DNS, TCP, UDP, raw packets, TLS), and
the registry the `case` decorator fills (CASES). attacks.py runs them."""

import base64
import gzip
import http.client
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

CFG = {}  # the run's configuration (attacks.py run CONFIG_JSON), filled in place
# A server name with terminal escapes (window title, clear screen): what the
# operator's terminal must never get raw (battery.rs reads `status` after).
ESCAPE_NAME = "\x1b]0;rbm-pwned\x07\x1b[2Jescape.battery.test"
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


def https_get(ip, name, path="/", bearer=None, host=None, verify=True, timeout=3, gzip_ok=False,
              auth=None, strict=False, extra=""):
    """One HTTP/1.1 GET over TLS to ip:443 with server name `name` (and Host
    `host`, by default the same): "STATUS BODY", or what failed. `verify`
    trusts what the bottle trusts (SSL_CERT_FILE: the public roots and the
    sentry's CA); `strict` verifies as Python 3.13 does by default (X.509
    strict: key identifiers and the rest RFC 5280 asks for); `gzip_ok`
    accepts a gzip-encoded body (and decodes it); `auth` is a whole
    Authorization value (instead of `bearer`); `extra` more header lines."""
    ctx = ssl.create_default_context()
    if strict:
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    auth = f"Authorization: {auth}\r\n" if auth else f"Authorization: Bearer {bearer}\r\n" if bearer else ""
    accept = "Accept-Encoding: gzip\r\n" if gzip_ok else ""
    req = f"GET {path} HTTP/1.1\r\nHost: {host or name}\r\n{auth}{accept}{extra}Connection: close\r\n\r\n"
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


def https_kept_alive(ip, name, requests, timeout=3):
    """HTTP/1.1 GETs one after the other on ONE kept-alive TLS connection to
    ip:443 with server name `name`, trusting what the bottle trusts, each
    (path, Host): "STATUS BODY" for each answer, then what failed or
    "closed after N" if the connection ended before the last request
    (never a second connection)."""
    ctx = ssl.create_default_context()
    out = []
    try:
        with socket.create_connection((ip, 443), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                for i, (path, host) in enumerate(requests):
                    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                    # Read one whole answer (Content-Length or chunked) and no
                    # more: the next request goes out only after it.
                    answer = http.client.HTTPResponse(tls)
                    answer.begin()
                    out.append(f"{answer.status} {answer.read().decode(errors='replace').strip()}")
                    if answer.will_close and i + 1 < len(requests):
                        out.append(f"closed after {i + 1}")
                        break
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        out.append(f"failed: {type(e).__name__}: {e}")
    return out


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


def world_closes():
    """Waits for the world's own close of a refused connection (after 0.5 s
    without bytes), which the sentry answers with a reset to the world: it
    falls in the case that caused it, not in the next one's window."""
    time.sleep(1)


def re_nothing_got(data):
    """The world's "what did you get" answer when it got no byte: its
    greeting may come back while the sentry holds the bottle's first bytes
    (a server that speaks first); that is not a byte out."""
    greeting = data.startswith(b"world ") and b" sees " in data
    return greeting or (data.startswith(b"world ") and data.rstrip().endswith(b" got 0 bytes"))


def tcp_send_from(port, ip, dport, data, timeout=SHUT):
    """Connects from local `port` (SO_REUSEADDR), sends `data`, reads the
    answer and ends with a reset (SO_LINGER 0), so the same port can
    connect again at once: 'answered ...', 'reset', 'closed' or 'silent'."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.settimeout(timeout)
    try:
        s.bind(("", port))
        s.connect((ip, dport))
        s.sendall(data)
        got = s.recv(4096)
        return f"answered {got[:40]!r}" if got else "closed"
    except ConnectionResetError:
        return "reset"
    except OSError as e:
        return f"silent ({e})"
    finally:
        s.close()


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
