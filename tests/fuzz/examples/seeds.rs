//! Writes the seed corpus (corpus/<target>/): real DNS queries and answers
//! made with hickory, the repo's profiles, and a ClientHello and QUIC
//! Initial made by rustls. Run from tests/fuzz: `cargo run --example seeds`.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::svcb::{
    Alpn, EchConfigList, IpHint, Mandatory, SvcParamKey, SvcParamValue, SVCB,
};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use rbm_agent::names::judge;
use rbm_fuzz::{framed, policy, query, ALLOWLIST, PLACEHOLDER, QUESTIONS};
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::quic;
use rustls::{ClientConfig, ClientConnection, RootCertStore, Side, SupportedCipherSuite};

fn main() {
    let corpus = Path::new("corpus");
    dns_request(&corpus.join("dns_request"));
    dns_answer(&corpus.join("dns_answer"));
    profile(&corpus.join("profile"));
    names(&corpus.join("names"));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn dns_request(dir: &Path) {
    for (i, _) in QUESTIONS.iter().enumerate() {
        write(dir, &format!("question{i}"), &query(i).to_vec().unwrap());
    }
    let mut any = query(0);
    any.queries[0].query_type = RecordType::ANY;
    write(dir, "any", &any.to_vec().unwrap());
    let mut chaos = query(0);
    chaos.queries[0] = Query::query(name("version.bind."), RecordType::TXT);
    chaos.queries[0].query_class = DNSClass::CH;
    write(dir, "chaos", &chaos.to_vec().unwrap());
    let mut two = query(0);
    two.add_query(Query::query(name("evil.test."), RecordType::A));
    write(dir, "two_questions", &two.to_vec().unwrap());
    let mut update = query(0);
    update.metadata.op_code = OpCode::Update;
    write(dir, "update", &update.to_vec().unwrap());
    let mut refused = query(0);
    refused.queries[0].name = name("exfil-4142434445.evil.test.");
    write(dir, "refused", &refused.to_vec().unwrap());
}

/// A reply from upstream to `QUESTIONS[index]`.
fn reply(index: usize, records: Vec<Record>) -> Message {
    let question = query(index);
    let mut reply = Message::response(0x9a9a, OpCode::Query);
    reply.metadata.recursion_available = true;
    reply.add_queries(question.queries);
    reply.add_answers(records);
    reply
}

fn a(owner: &str, addr: [u8; 4], ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(addr))))
}

fn aaaa(owner: &str, addr: &str, ttl: u32) -> Record {
    let addr: Ipv6Addr = addr.parse().unwrap();
    Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA(addr)))
}

fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
}

/// Each seed starts with the selector byte: question index, bit 3 for the
/// `global()` policy.
fn dns_answer(dir: &Path) {
    let seed = |file: &str, select: u8, reply: Message| {
        let mut bytes = vec![select];
        bytes.extend(reply.to_vec().unwrap());
        write(dir, file, &bytes);
    };
    seed(
        "a_with_chain_and_injected",
        0,
        reply(
            0,
            vec![
                cname("a.test.", "edge.cdn.example."),
                a("edge.cdn.example.", [192, 0, 2, 80], 20),
                a("edge.cdn.example.", [127, 0, 0, 1], 20),
                a("evil.test.", [203, 0, 113, 66], 600),
            ],
        ),
    );
    seed(
        "aaaa",
        1,
        reply(
            1,
            vec![
                aaaa("a.test.", "2001:db8::80", 3600),
                aaaa("a.test.", "::1", 60),
            ],
        ),
    );
    seed(
        "wildcard",
        2,
        reply(2, vec![a("x.cdn.test.", [198, 51, 100, 7], 5)]),
    );
    let params = vec![
        (
            SvcParamKey::Mandatory,
            SvcParamValue::Mandatory(Mandatory(vec![
                SvcParamKey::Alpn,
                SvcParamKey::EchConfigList,
            ])),
        ),
        (
            SvcParamKey::Alpn,
            SvcParamValue::Alpn(Alpn(vec!["h3".into(), "h2".into()])),
        ),
        (
            SvcParamKey::Ipv4Hint,
            SvcParamValue::Ipv4Hint(IpHint(vec![A(Ipv4Addr::new(203, 0, 113, 99))])),
        ),
        (
            SvcParamKey::EchConfigList,
            SvcParamValue::EchConfigList(EchConfigList(vec![0, 4, 1, 2, 3, 4])),
        ),
    ];
    let https = Record::from_rdata(
        name("a.test."),
        300,
        RData::HTTPS(HTTPS(SVCB::new(1, Name::root(), params))),
    );
    seed("https_with_ech", 3, reply(3, vec![https]));
    seed(
        "credential_host",
        4,
        reply(4, vec![a("api.cred.test.", [192, 0, 2, 44], 60)]),
    );
    seed(
        "upper_case",
        5,
        reply(5, vec![a("b.test.", [192, 0, 2, 22], 120)]),
    );
    let mut nxdomain = reply(6, vec![]);
    nxdomain.metadata.response_code = ResponseCode::NXDomain;
    let soa = SOA::new(
        name("b.test."),
        name("hostmaster.b.test."),
        1,
        7200,
        900,
        1_209_600,
        300,
    );
    nxdomain.add_authority(Record::from_rdata(name("b.test."), 300, RData::SOA(soa)));
    seed("nxdomain", 6, nxdomain);
    seed(
        "global_unlisted",
        7 | 8,
        reply(
            7,
            vec![
                a("other.test.", [192, 0, 2, 1], 60),
                Record::from_rdata(
                    name("other.test."),
                    60,
                    RData::TXT(TXT::new(vec!["v=spf1 -all".into()])),
                ),
            ],
        ),
    );
    let many = (0..60)
        .map(|i| a("api.cred.test.", [198, 51, 100, i], 60))
        .collect();
    seed("larger_than_512", 4, reply(4, many));
}

fn profile(dir: &Path) {
    write(dir, "fuzz_allowlist.toml", ALLOWLIST.as_bytes());
    write(dir, "fuzz_global.toml", rbm_fuzz::global().as_bytes());
    let demo = fs::read("../../profiles/demo.toml").unwrap();
    write(dir, "demo.toml", &demo);
    let readme = fs::read_to_string("../../README.md").unwrap();
    let start = readme
        .find("```toml\nmoniker")
        .expect("README's profile example")
        + 8;
    let end = start + readme[start..].find("```").unwrap();
    write(dir, "readme.toml", &readme.as_bytes()[start..end]);
    let broken = ALLOWLIST
        .replace("10.242.0.3", "10.242.0.2")
        .replace("a.test:443", "a..test:0");
    write(dir, "invalid.toml", broken.as_bytes());
}

/// A ClientHello for `host` as rustls sends it: TLS records.
fn client_hello(host: &str) -> Vec<u8> {
    let config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let mut conn =
        ClientConnection::new(Arc::new(config), host.to_string().try_into().unwrap()).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// The first client Initial of a QUIC v1 connection to `host`, as rustls
/// and RFC 9000 make it: the ClientHello in a CRYPTO frame, padded to 1200
/// bytes, sealed with the Initial keys and header protection.
fn quic_initial(host: &str) -> Vec<u8> {
    let mut config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h3".to_vec()];
    let mut conn = quic::ClientConnection::new(
        Arc::new(config),
        quic::Version::V1,
        host.to_string().try_into().unwrap(),
        vec![0x01, 0x02, 0x67, 0x10],
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_hs(&mut hello);

    let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    let SupportedCipherSuite::Tls13(suite) = cipher_suite::TLS13_AES_128_GCM_SHA256 else {
        unreachable!()
    };
    let keys = suite
        .quic_suite()
        .unwrap()
        .keys(&dcid, Side::Client, quic::Version::V1);
    let tag_len = keys.local.packet.tag_len();

    let mut payload = vec![0x06, 0x00]; // CRYPTO at offset 0
    payload.extend_from_slice(&(0x4000 | hello.len() as u16).to_be_bytes());
    payload.extend_from_slice(&hello);
    let mut header = vec![0xc1]; // long header, Initial, 2-byte packet number
    header.extend_from_slice(&1u32.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(&dcid);
    header.push(0); // no source connection ID
    header.push(0); // no token
    let room = 1200 - header.len() - 2 - 2 - tag_len;
    payload.resize(room, 0); // PADDING frames
    header.extend_from_slice(&(0x4000 | (2 + payload.len() + tag_len) as u16).to_be_bytes());
    let pn_at = header.len();
    header.extend_from_slice(&[0, 0]);
    let tag = keys
        .local
        .packet
        .encrypt_in_place(0, &header, &mut payload)
        .unwrap();
    let mut packet = [header, payload, tag.as_ref().to_vec()].concat();
    let sample: [u8; 16] = packet[pn_at + 4..pn_at + 20].try_into().unwrap();
    let (first, rest) = packet.split_at_mut(1);
    keys.local
        .header
        .encrypt_in_place(&sample, &mut first[0], &mut rest[pn_at - 1..pn_at + 1])
        .unwrap();
    packet
}

/// An IPv4 packet from the bottle: TCP (`flags`, `seq`) or UDP (`None`).
fn ipv4(dport: u16, tcp: Option<(u8, u32)>, payload: &[u8]) -> Vec<u8> {
    let l4 = match tcp {
        Some((flags, seq)) => {
            let mut h = Vec::new();
            h.extend_from_slice(&40000u16.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&seq.to_be_bytes());
            h.extend_from_slice(&0u32.to_be_bytes());
            h.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            h
        }
        None => {
            let mut h = Vec::new();
            h.extend_from_slice(&40000u16.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0]);
            h
        }
    };
    let total = 20 + l4.len() + payload.len();
    let proto = if tcp.is_some() { 6 } else { 17 };
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&[10, 242, 0, 3]);
    ip.extend_from_slice(&[192, 0, 2, 80]);
    [ip, l4, payload.to_vec()].concat()
}

/// Each seed starts with the selector byte: low 2 bits the mode (0 queued
/// packets, 1 a TCP stream, 2 UDP datagrams, 3 the parsers alone), the
/// next 2 the port (443, 80, 22, 8443).
fn names(dir: &Path) {
    let seed = |file: &str, select: u8, body: &[u8]| {
        write(dir, file, &[&[select][..], body].concat());
    };
    let hello = client_hello("a.test");
    let initial = quic_initial("x.cdn.test");
    // The seeds are what they claim: the name check reads their names.
    let allowed = |name: &str| judge::Outcome::Allow {
        name: Some(name.into()),
    };
    assert_eq!(judge::tcp(policy(false), 443, &hello), allowed("a.test"));
    assert_eq!(
        judge::udp(policy(false), 443, &[&initial]),
        allowed("x.cdn.test")
    );
    let (syn, ack, psh) = (0x02, 0x10, 0x18);
    let (first, second) = hello.split_at(hello.len() / 2);
    seed(
        "queued_tls_in_two_segments",
        0,
        &framed(&[
            &ipv4(443, Some((syn, 1000)), &[]),
            &ipv4(443, Some((ack, 1001)), &[]),
            &ipv4(443, Some((psh, 1001)), first),
            &ipv4(443, Some((psh, 1001 + first.len() as u32)), second),
        ]),
    );
    let get = b"GET /simple HTTP/1.1\r\nHost: a.test\r\nUser-Agent: curl/8\r\n\r\n";
    seed(
        "queued_http_denied_on_80",
        0,
        &framed(&[
            &ipv4(80, Some((syn, 5)), &[]),
            &ipv4(80, Some((psh, 6)), get),
        ]),
    );
    seed("queued_quic", 0, &framed(&[&ipv4(443, None, &initial)]));
    seed("tcp443_tls", 1, &hello);
    seed("tcp443_tls_other_name", 1, &client_hello("evil.test"));
    seed("tcp80_http", 1 | (1 << 2), get);
    let leak = [
        &b"POST / HTTP/1.1\r\nHost: b.test:22\r\nAuthorization: Bearer "[..],
        PLACEHOLDER,
        b"\r\n\r\n",
    ]
    .concat();
    seed("tcp22_placeholder", 1 | (2 << 2), &leak);
    seed(
        "tcp8443_connect",
        1 | (3 << 2),
        b"CONNECT deep.x.b.test:8443 HTTP/1.1\r\nHost: deep.x.b.test:8443\r\n\r\n",
    );
    seed("udp443_quic", 2, &framed(&[&initial]));
    seed("parsers_hello", 3, &hello);
}
