"""Names on the wire (SNI, Host, QUIC, ECH, fronting) and the credential:
the placeholder anywhere but its host, the real key never back."""

from common import *  # noqa: F401,F403 (helpers and CFG)


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


# The two limits above, closed for a host with request rules ([[requests]]:
# ruled.battery.test allows only GET /allowed/**): the sentry opens its TLS
# and checks every request, its Host included.


@case("names", "domain fronting on a host with request rules: TLS to ruled.battery.test (trusting the sentry's CA), "
      "a foreign Host inside, on a path the rules allow",
      "403 from the sentry; the world never gets it (battery.rs checks its log)", egress=["DNS", "RULED:443"])
def fronting_inside_ruled_tls():
    a = dns_query(CFG["ruled_name"], timeout=2)
    r = https_get(CFG["ruled"], CFG["ruled_name"], path="/allowed/fronted", host=CFG["other_name"])
    return (r.startswith("403 rbm: "), f"dns {shown(a)}; https {r}")


@case("names", "HTTPS kept alive to a host with request rules: GET /allowed/kept-alive, then GET /forbidden on the same connection",
      "the first answered (200), the second 403 from the sentry; the world gets the first only (battery.rs checks its log)",
      egress=["DNS", "RULED:443"])
def http_keep_alive_second_request_on_ruled_host():
    a = dns_query(CFG["ruled_name"], timeout=2)
    name = CFG["ruled_name"]
    r = https_kept_alive(CFG["ruled"], name, [("/allowed/kept-alive", name), ("/forbidden", name)])
    ok = len(r) == 2 and r[0].startswith("200 ") and r[1].startswith("403 rbm: ")
    return (ok, f"dns {shown(a)}; https " + "; then ".join(r))


# Found by reading the agent as an attacker would (issue 21): a verdict
# kept for a 4-tuple, a QUIC flow checked once, HTTP a lenient server reads.


@case("names", "a ClientHello for the allowed name, a reset, then from the same source port a ClientHello for a refused name",
      "the first reaches its world; the second is closed, no byte of it reaches the world", egress=["DNS", "API:443"])
def reused_source_port_carries_another_name():
    dns_query(CFG["api_name"], timeout=2)
    # A port another socket of the bottle holds (EADDRINUSE) proves
    # nothing: another random one.
    for _ in range(10):
        port = random.randint(30000, 60000)
        first = tcp_send_from(port, CFG["api"], 443, client_hello(CFG["api_name"]))
        if "Address already in use" not in str(first):
            break
    second = tcp_send_from(port, CFG["api"], 443, client_hello(CFG["other_name"]))
    world_closes()
    return (bool(world_got(first)) and blocked(second), f"first {first}; second {second}")


@case("names", "a QUIC Initial for the allowed name, then from the same socket a new QUIC connection (another ID) for a refused name",
      "the first reaches its world; the second is dropped", egress=["DNS", "API:443"])
def second_quic_connection_on_one_flow():
    dns_query(CFG["api_name"], timeout=2)
    # Split: datagrams under the MTU (a fragment's port the witness cannot read).
    out = probe("send", f"{CFG['api']}:443", "--quic", CFG["other_name"], "--after-quic", CFG["api_name"],
                "--split", "600", "--timeout-ms", "800")
    first_ok = "before" not in (out.get("error") or "")
    return (first_ok and not out.get("ok"), json.dumps(out)[:160])


def http_on_8080(request):
    dns_query(CFG["api_name"], timeout=2)
    r = tcp_send_parts(CFG["api"], 8080, [request])
    world_closes()
    return (blocked(r), f"tcp {r}")


@case("names", "HTTP with a refused Host to the allowed name's port 8080, after an empty line (which servers skip)",
      "closed; nothing reaches the world", egress=["DNS", "API:8080/empty"])
def http_after_an_empty_line():
    return http_on_8080(b"\r\n" + plain_request(CFG["other_name"]))


@case("names", "HTTP/1.2 with a refused Host to the allowed name's port 8080 (servers read it as 1.1)",
      "closed; nothing reaches the world", egress=["DNS", "API:8080/empty"])
def http_1_2_with_a_refused_host():
    return http_on_8080(plain_request(CFG["other_name"]).replace(b"HTTP/1.1", b"HTTP/1.2", 1))


@case("names", "HTTP/2 prior knowledge (h2c) to the allowed name's port 8080",
      "closed (the check cannot read HPACK); nothing reaches the world", egress=["DNS", "API:8080/empty"])
def h2c_prior_knowledge():
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    return http_on_8080(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings)


@case("names", "an absolute target of another scheme (xyz://refused/) with the allowed Host, to port 8080",
      "closed; nothing reaches the world", egress=["DNS", "API:8080/empty"])
def absolute_target_of_another_scheme():
    return http_on_8080(f"GET xyz://{CFG['other_name']}/ HTTP/1.1\r\nHost: {CFG['api_name']}\r\n\r\n".encode())


@case("names", "a ClientHello whose server name holds terminal escape sequences (ESC ] title, ESC [2J clear)",
      "closed; battery.rs then checks that `rbm-launch status` shows it with no control byte",
      egress=["DNS", "API:443/empty"])
def escape_sequences_as_a_server_name():
    dns_query(CFG["api_name"], timeout=2)
    out = probe("send", f"{CFG['api']}:443", "--tls", ESCAPE_NAME, "--timeout-ms", "800")
    world_closes()
    return (not out.get("ok"), json.dumps(out)[:160])


@case("names", "HTTP with a refused Host to port 8080, its request line split by form feeds (Python's http.server reads it)",
      "closed; nothing reaches the world", egress=["DNS", "API:8080/empty"])
def http_split_by_form_feeds():
    return http_on_8080(plain_request(CFG["other_name"]).replace(b" ", b"\x0c", 2))


@case("names", "raw sockets: a second SYN with a lower sequence number and a decoy ClientHello for the allowed name "
      "'before' the real start, then the real ClientHello for a refused name",
      "closed at the second SYN; no byte of the refused name's hello reaches the world", egress=["DNS", "API:443"])
def second_syn_moves_where_the_check_reads():
    from scapy.all import IP, TCP, AsyncSniffer, conf
    from scapy.all import send as raw_send

    conf.verb = 0
    dns_query(CFG["api_name"], timeout=2)
    api = CFG["api"]
    sniffer = AsyncSniffer(iface=CFG["ifname"], count=2,
                           filter=f"tcp and host {api} and port 443 and tcp[tcpflags] & tcp-syn != 0")
    sniffer.start()
    time.sleep(0.5)
    s = socket.create_connection((api, 443), timeout=2)
    sniffer.join(timeout=2)
    seen = {p[TCP].flags.value & 0x12: p[TCP] for p in (sniffer.results or [])}
    if 0x02 not in seen or 0x12 not in seen:
        s.close()
        return (False, f"did not see the handshake ({len(sniffer.results or [])} packets)")
    syn, synack = seen[0x02], seen[0x12]
    decoy = client_hello(CFG["api_name"])
    base = (syn.seq - len(decoy)) & 0xFFFFFFFF
    ip = IP(src=CFG["bottle"], dst=api)
    raw_send(ip / TCP(sport=syn.sport, dport=443, flags="S", seq=base), verbose=0)
    time.sleep(0.1)
    raw_send(ip / TCP(sport=syn.sport, dport=443, flags="PA", seq=(base + 1) & 0xFFFFFFFF,
                      ack=(synack.seq + 1) & 0xFFFFFFFF) / decoy, verbose=0)
    time.sleep(0.2)
    try:
        s.sendall(client_hello(CFG["other_name"]))
        got = s.recv(4096)
        r = f"answered {got[:40]!r}" if got else "closed"
    except ConnectionResetError:
        r = "reset"
    except OSError as e:
        r = f"silent ({e})"
    finally:
        s.close()
    world_closes()
    return (blocked(r), f"the real hello: {r}")


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
      "403 from the sentry: nothing swapped, nothing forwarded (a front end that routes by Host would hand the key to another origin)",
      egress=["DNS", "CRED:443"])
def placeholder_with_another_host_inside_the_credential_tls():
    dns_query(CFG["cred_name"], timeout=2)
    r = https_get(CFG["cred"], CFG["cred_name"], bearer=placeholder(), host=CFG["front_name"])
    return (r.startswith("403 "), f"https {r}")


@case("creds", "Basic credentials with the placeholder as password, asking the credential host to echo its Authorization",
      "the echo comes back as the bottle sent it (the base64 the sentry made of the real key is redacted too)",
      egress=["DNS", "CRED:443"])
def basic_credentials_echoed():
    dns_query(CFG["cred_name"], timeout=2)
    sent = "Basic " + base64.b64encode(f"rbm:{placeholder()}".encode()).decode()
    r = https_get(CFG["cred"], CFG["cred_name"], auth=sent)
    return (placeholder() != "" and r == f"200 auth: {sent}", f"https {r}")


@case("creds", "the placeholder in a path, a query parameter and an x-title header the credential host would store and publish",
      "those keep the placeholder, only Authorization gets the real key (battery.rs reads the world's log of the request)",
      egress=["DNS", "CRED:443"])
def placeholder_where_the_host_publishes():
    dns_query(CFG["cred_name"], timeout=2)
    ph = placeholder()
    r = https_get(CFG["cred"], CFG["cred_name"], path=f"/published/{ph}?title={ph}", bearer=ph,
                  extra=f"x-title: {ph}\r\n")
    return (ph != "" and r == f"200 auth: Bearer {ph}", f"https {r}")


@case("creds", "the credential host from a client that verifies as Python 3.13 does (X.509 strict)",
      "the sentry's certificate is accepted; the echo holds the placeholder", egress=["DNS", "CRED:443"])
def strict_client_takes_the_sentry_certificate():
    dns_query(CFG["cred_name"], timeout=2)
    r = https_get(CFG["cred"], CFG["cred_name"], bearer=placeholder(), strict=True)
    return (placeholder() != "" and r == f"200 auth: Bearer {placeholder()}", f"https {r}")


# ---------------------------------------------------------------- driver
