//! QUIC: the server name in a client's Initial packets. Their keys come
//! from the connection ID the client chose (RFC 9001, section 5.2), so the
//! sentry can read the ClientHello in their CRYPTO frames, as any on-path
//! observer can. Versions 1 and 2; anything else is refused (the client
//! falls back to TCP, where the name is checked too).

use ring::aead::quic::{HeaderProtectionKey, AES_128};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::hkdf::{KeyType, Prk, Salt, HKDF_SHA256};

use super::{tls, Seen};

const V1: u32 = 0x0000_0001;
const V2: u32 = 0x6b33_43cf;
const V1_SALT: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
const V2_SALT: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
const MAX_CID: usize = 20;
const SAMPLE: usize = 16;
const TAG: usize = 16;
/// A protected packet's least length after its header: a packet number
/// and enough for the header-protection sample, which includes the tag.
const MIN_PROTECTED: u64 = (4 + SAMPLE) as u64;
/// CRYPTO data gathered from the Initials at most.
const MAX_CRYPTO: usize = 64 << 10;

/// The Initial packets' keys of one version and connection ID.
pub struct Keys {
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

struct Version {
    salt: &'static [u8; 20],
    /// The long-header packet type that means Initial.
    initial_type: u8,
    labels: [&'static [u8]; 3],
}

fn version(number: u32) -> Option<Version> {
    match number {
        V1 => Some(Version {
            salt: &V1_SALT,
            initial_type: 0,
            labels: [b"quic key", b"quic iv", b"quic hp"],
        }),
        V2 => Some(Version {
            salt: &V2_SALT,
            initial_type: 1,
            labels: [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"],
        }),
        _ => None,
    }
}

/// An HKDF output length, as ring takes it.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// TLS 1.3's HKDF-Expand-Label with an empty context.
fn expand_label(secret: &Prk, label: &[u8], out: &mut [u8]) {
    let mut info = (out.len() as u16).to_be_bytes().to_vec();
    info.push((6 + label.len()) as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    secret
        .expand(&[&info], Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("output lengths are fixed and small");
}

/// The client's Initial keys for `dcid` (the Destination Connection ID of
/// the client's first Initial).
pub fn client_keys(version_number: u32, dcid: &[u8]) -> Option<Keys> {
    let v = version(version_number)?;
    let initial = Salt::new(HKDF_SHA256, v.salt).extract(dcid);
    let mut client = [0u8; 32];
    expand_label(&initial, b"client in", &mut client);
    let client = Prk::new_less_safe(HKDF_SHA256, &client);
    let mut keys = Keys {
        key: [0; 16],
        iv: [0; 12],
        hp: [0; 16],
    };
    expand_label(&client, v.labels[0], &mut keys.key);
    expand_label(&client, v.labels[1], &mut keys.iv);
    expand_label(&client, v.labels[2], &mut keys.hp);
    Some(keys)
}

/// The header-protection mask for `sample`: for the first byte's low
/// bits, then for a packet number of up to 4 bytes.
pub fn mask(hp: &[u8; 16], sample: &[u8]) -> [u8; 5] {
    HeaderProtectionKey::new(&AES_128, hp)
        .and_then(|key| key.new_mask(&sample[..SAMPLE]))
        .expect("a 16-byte key and a 16-byte sample")
}

/// The AEAD key of the Initial packets.
fn packet_key(key: &[u8; 16]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_128_GCM, key).expect("a 16-byte key"))
}

/// The AEAD nonce: the IV with the packet number XORed into its end.
pub fn nonce(iv: &[u8; 12], packet_number: u64) -> [u8; 12] {
    let mut n = *iv;
    for (b, p) in n[4..].iter_mut().zip(packet_number.to_be_bytes()) {
        *b ^= p;
    }
    n
}

/// A QUIC variable-length integer at the start of `buf`: value and length.
pub fn varint(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let mut value = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        value = (value << 8) | u64::from(*b);
    }
    Some((value, len))
}

/// The server name in the client's Initial packets so far (one datagram
/// may carry several packets; the ClientHello may span datagrams).
pub fn initial_name(datagrams: &[&[u8]]) -> Seen {
    initial_name_keyed(datagrams, &[])
}

/// `initial_name`, where a packet that does not decrypt with the keys of
/// its own ID may be a later Initial of one of the `known` connections
/// (the server's ID, the first ID's keys).
pub fn initial_name_keyed(datagrams: &[&[u8]], known: &[Origin]) -> Seen {
    let mut crypto: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut initials = 0;
    let open = |packet: &[u8]| {
        let own = initial_packet(packet);
        if matches!(own, Ok(Some(_))) {
            return own;
        }
        known
            .iter()
            .map(|o| initial_packet_keyed(packet, Some(o)))
            .find(|r| matches!(r, Ok(Some(_))))
            .unwrap_or(own)
    };
    for datagram in datagrams {
        let mut rest = *datagram;
        while !rest.is_empty() {
            match open(rest) {
                Ok(Some((frames, used))) => {
                    if let Err(why) = crypto_frames(&frames, &mut crypto) {
                        return Seen::Malformed(why);
                    }
                    initials += 1;
                    rest = &rest[used..];
                }
                // Not an Initial: a 0-RTT or Handshake packet is skipped
                // (an Initial may follow it); a short header, padding or a
                // Retry ends the datagram.
                Ok(None) => match long_packet(rest) {
                    Ok(Some((_, len))) => rest = &rest[len..],
                    Ok(None) => break,
                    Err(why) => return Seen::Malformed(why),
                },
                Err(why) => return Seen::Malformed(why),
            }
        }
    }
    if initials == 0 {
        return Seen::Malformed("UDP 443 without a QUIC Initial");
    }
    let Some(stream) = contiguous(crypto) else {
        return Seen::Malformed("QUIC CRYPTO data beyond any ClientHello");
    };
    if stream.len() < 4 {
        return Seen::NeedMore;
    }
    let len = u32::from_be_bytes([0, stream[1], stream[2], stream[3]]) as usize;
    if len > tls::MAX_HELLO {
        return Seen::Malformed("a ClientHello too large to be real");
    }
    match stream.get(..4 + len) {
        Some(message) => tls::hello_name(message),
        None => Seen::NeedMore,
    }
}

/// The connection a client's Initial belongs to: its version and the
/// Destination Connection ID its keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub version: u32,
    pub dcid: Vec<u8>,
}

/// What a long-header datagram on a QUIC flow already allowed can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Again {
    /// Nothing new: a short header, a Handshake or 0-RTT packet (which no
    /// server takes as a new connection), or an Initial of a connection
    /// already allowed that carries no ClientHello bytes (its ACKs).
    Known,
    /// An Initial that carries ClientHello bytes, or of another connection
    /// (its own ID and keys): a server whose connection is gone, or that
    /// routes by the new ID, opens a connection for it, so its name is
    /// read as a new flow's (a retransmitted hello names the same name).
    New,
    Refused(&'static str),
}

/// Whether `datagram`, sent on a UDP flow whose allowed QUIC connections
/// are `known`, may open another one.
/// Every long-header packet of the datagram is looked at, not only the
/// first: a server reads on past a packet it cannot decrypt, so an Initial
/// coalesced behind a known one (or behind a Handshake packet) could open
/// a connection unread.
pub fn again(datagram: &[u8], known: &[Origin]) -> Again {
    let acks_only = |packet: &[u8], o: &Origin| match initial_packet_keyed(packet, Some(o)) {
        Ok(Some((frames, _))) => {
            let mut crypto = Vec::new();
            crypto_frames(&frames, &mut crypto).is_ok() && crypto.is_empty()
        }
        _ => false,
    };
    let mut rest = datagram;
    while !rest.is_empty() {
        match long_packet(rest) {
            Err(why) => return Again::Refused(why),
            // A short header or a Retry: the rest of the datagram is it.
            Ok(None) => break,
            Ok(Some((initial, len))) => {
                if initial && !known.iter().any(|o| acks_only(&rest[..len], o)) {
                    return Again::New;
                }
                rest = &rest[len..];
            }
        }
    }
    Again::Known
}

/// The long-header packet at the start of `buf`: whether it is an Initial,
/// and its length. `None` for a short header or a Retry, which take the
/// rest of the datagram.
fn long_packet(buf: &[u8]) -> Result<Option<(bool, usize)>, &'static str> {
    const TRUNCATED: &str = "a truncated QUIC header";
    let first = buf[0];
    if first & 0x80 == 0 {
        return Ok(None);
    }
    let number = u32::from_be_bytes(buf.get(1..5).ok_or(TRUNCATED)?.try_into().expect("four"));
    let v = version(number).ok_or("QUIC of a version rbm cannot read")?;
    let kind = (first >> 4) & 0x03;
    if kind == (v.initial_type + 3) & 0x03 {
        return Ok(None);
    }
    let mut at = 5;
    for _ in 0..2 {
        let len = usize::from(*buf.get(at).ok_or(TRUNCATED)?);
        if len > MAX_CID {
            return Err("a QUIC connection ID longer than 20 bytes");
        }
        at += 1 + len;
    }
    let initial = kind == v.initial_type;
    if initial {
        let (token, n) = varint(buf.get(at..).ok_or(TRUNCATED)?).ok_or(TRUNCATED)?;
        at = at.saturating_add(n).saturating_add(token as usize);
    }
    let (length, n) = varint(buf.get(at..).ok_or(TRUNCATED)?).ok_or(TRUNCATED)?;
    if length < MIN_PROTECTED {
        // A server drops it, and where it reads on from is anyone's guess.
        return Err("a QUIC packet too short for a packet number and a tag");
    }
    let end = (at + n)
        .checked_add(length as usize)
        .filter(|end| *end <= buf.len())
        .ok_or("a QUIC packet longer than its datagram")?;
    Ok(Some((initial, end)))
}

/// The origin of the Initial at the start of `datagram` as its header
/// says (its own Destination Connection ID); `None` when it does not start
/// with a long-header Initial; an error for a version rbm cannot read.
pub fn initial_origin(datagram: &[u8]) -> Result<Option<Origin>, &'static str> {
    let Some(&first) = datagram.first() else {
        return Ok(None);
    };
    if first & 0x80 == 0 {
        return Ok(None);
    }
    let version_number = u32::from_be_bytes(
        datagram
            .get(1..5)
            .ok_or("a truncated QUIC header")?
            .try_into()
            .expect("four bytes"),
    );
    let v = version(version_number).ok_or("QUIC of a version rbm cannot read")?;
    if (first >> 4) & 0x03 != v.initial_type {
        return Ok(None);
    }
    let len = usize::from(*datagram.get(5).ok_or("a truncated QUIC header")?);
    if len > MAX_CID {
        return Err("a QUIC connection ID longer than 20 bytes");
    }
    let dcid = datagram.get(6..6 + len).ok_or("a truncated QUIC header")?;
    Ok(Some(Origin {
        version: version_number,
        dcid: dcid.to_vec(),
    }))
}

/// Decrypts the Initial packet at the start of `buf`: its frames and how
/// many bytes of `buf` it took. `None` when `buf` does not start with a
/// long-header Initial.
fn initial_packet(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, &'static str> {
    initial_packet_keyed(buf, None)
}

/// `initial_packet`, with the keys of `origin` (a connection's first
/// Destination Connection ID) rather than those of the packet's own ID:
/// a client's later Initials carry the ID the server chose, and the keys
/// of the first.
fn initial_packet_keyed(
    buf: &[u8],
    origin: Option<&Origin>,
) -> Result<Option<(Vec<u8>, usize)>, &'static str> {
    let first = buf[0];
    if first & 0x80 == 0 {
        return Ok(None);
    }
    let number = u32::from_be_bytes(
        buf.get(1..5)
            .ok_or("a truncated QUIC header")?
            .try_into()
            .expect("four bytes"),
    );
    let v = version(number).ok_or("QUIC of a version rbm cannot read")?;
    if (first >> 4) & 0x03 != v.initial_type {
        return Ok(None);
    }
    let mut at = 5;
    let mut cid = || -> Result<&[u8], &'static str> {
        let len = usize::from(*buf.get(at).ok_or("a truncated QUIC header")?);
        if len > MAX_CID {
            return Err("a QUIC connection ID longer than 20 bytes");
        }
        let id = buf
            .get(at + 1..at + 1 + len)
            .ok_or("a truncated QUIC header")?;
        at += 1 + len;
        Ok(id)
    };
    let dcid = cid()?;
    cid()?;
    let (token_len, n) = varint(&buf[at..]).ok_or("a truncated QUIC header")?;
    at += n + token_len as usize;
    let (length, n) =
        varint(buf.get(at..).ok_or("a truncated QUIC header")?).ok_or("a truncated QUIC header")?;
    at += n;
    let pn_at = at;
    let end = pn_at
        .checked_add(length as usize)
        .filter(|end| *end <= buf.len())
        .ok_or("a QUIC packet longer than its datagram")?;
    let keys = match origin {
        Some(o) if o.version != number => return Err("another QUIC version"),
        Some(o) => client_keys(number, &o.dcid),
        None => client_keys(number, dcid),
    }
    .expect("the version was checked");
    let sample = buf
        .get(pn_at + 4..pn_at + 4 + SAMPLE)
        .ok_or("a QUIC packet too short to sample")?;
    let mask = mask(&keys.hp, sample);
    let mut header = buf[..pn_at].to_vec();
    header[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(header[0] & 0x03) + 1;
    let mut packet_number = 0u64;
    for i in 0..pn_len {
        let b = buf[pn_at + i] ^ mask[1 + i];
        header.push(b);
        packet_number = (packet_number << 8) | u64::from(b);
    }
    let sealed = buf
        .get(pn_at + pn_len..end)
        .filter(|s| s.len() >= TAG)
        .ok_or("a QUIC packet too short for its tag")?;
    let nonce = Nonce::assume_unique_for_key(nonce(&keys.iv, packet_number));
    let mut frames = sealed.to_vec();
    let plain = packet_key(&keys.key)
        .open_in_place(nonce, Aad::from(&header), &mut frames)
        .map_err(|_| "a QUIC Initial that does not decrypt")?
        .len();
    frames.truncate(plain);
    Ok(Some((frames, end)))
}

/// Gathers the CRYPTO frames of one Initial; PADDING, PING and ACK are
/// skipped; any other frame has no place in a client's Initial.
fn crypto_frames(mut frames: &[u8], out: &mut Vec<(u64, Vec<u8>)>) -> Result<(), &'static str> {
    const TRUNCATED: &str = "a truncated QUIC frame";
    while let Some((kind, n)) = varint(frames) {
        frames = &frames[n..];
        match kind {
            0x00 | 0x01 => {}
            0x02 | 0x03 => {
                // largest, delay, range count, first range, then ranges.
                let mut fields = 4;
                let mut ranges = 0;
                while fields > 0 {
                    let (v, n) = varint(frames).ok_or(TRUNCATED)?;
                    if fields == 2 {
                        ranges = v;
                    }
                    frames = &frames[n..];
                    fields -= 1;
                }
                let extra =
                    ranges.checked_mul(2).ok_or(TRUNCATED)? + if kind == 0x03 { 3 } else { 0 };
                for _ in 0..extra {
                    let (_, n) = varint(frames).ok_or(TRUNCATED)?;
                    frames = &frames[n..];
                }
            }
            0x06 => {
                let (offset, n) = varint(frames).ok_or(TRUNCATED)?;
                frames = &frames[n..];
                let (len, n) = varint(frames).ok_or(TRUNCATED)?;
                frames = &frames[n..];
                let data = frames.get(..len as usize).ok_or(TRUNCATED)?;
                if offset.saturating_add(len) > MAX_CRYPTO as u64 {
                    return Err("QUIC CRYPTO data beyond any ClientHello");
                }
                out.push((offset, data.to_vec()));
                frames = &frames[len as usize..];
            }
            _ => return Err("a frame that has no place in a client's QUIC Initial"),
        }
    }
    Ok(())
}

/// The CRYPTO stream from offset 0 as far as it is contiguous. Overlaps
/// must agree; `None` if they do not.
fn contiguous(mut pieces: Vec<(u64, Vec<u8>)>) -> Option<Vec<u8>> {
    pieces.sort_by_key(|(offset, _)| *offset);
    let mut out: Vec<u8> = Vec::new();
    for (offset, data) in pieces {
        let at = offset as usize;
        if at > out.len() {
            break;
        }
        let overlap = (out.len() - at).min(data.len());
        if out[at..at + overlap] != data[..overlap] {
            return None;
        }
        out.extend_from_slice(&data[overlap..]);
    }
    Some(out)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::names::tls::tests::hello;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn keys_match_rfc_9001_appendix_a() {
        let keys = client_keys(V1, &hex("8394c8f03e515708")).unwrap();
        assert_eq!(keys.key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(keys.iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(keys.hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
        // RFC 9001 A.2: the header protection of the client's Initial.
        let sample = hex("d1b1c98dd7689fb8ec11d242b123dc9b");
        assert_eq!(mask(&keys.hp, &sample).to_vec(), hex("437b9aec36"));
        let v2 = client_keys(V2, &hex("8394c8f03e515708")).unwrap();
        assert_eq!(v2.key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert!(client_keys(0xff00_001d, b"x").is_none());
    }

    /// A client Initial carrying `crypto` at `offset` (the client's side of
    /// the protection the agent removes).
    pub fn initial(version: u32, dcid: &[u8], pn: u64, offset: u64, crypto: &[u8]) -> Vec<u8> {
        initial_keyed(version, dcid, dcid, pn, offset, crypto)
    }

    /// An Initial with `dcid` in its header and the keys of `keyed_by` (a
    /// client's Initial after the server chose its connection ID).
    pub fn initial_keyed(
        version: u32,
        keyed_by: &[u8],
        dcid: &[u8],
        pn: u64,
        offset: u64,
        crypto: &[u8],
    ) -> Vec<u8> {
        let keys = client_keys(version, keyed_by).unwrap();
        // No hello bytes: a PING (the ACKs of a later Initial, as far as
        // the check cares).
        let mut frames = vec![0x01];
        if !crypto.is_empty() {
            frames = vec![0x06];
            frames.extend(encode_varint(offset));
            frames.extend(encode_varint(crypto.len() as u64));
            frames.extend_from_slice(crypto);
        }
        frames.resize(frames.len().max(1162), 0);
        let initial_type = version_type(version);
        let mut header = vec![0xc0 | (initial_type << 4) | 0x01];
        header.extend_from_slice(&version.to_be_bytes());
        header.push(dcid.len() as u8);
        header.extend_from_slice(dcid);
        header.push(0);
        header.push(0);
        let length = 2 + frames.len() + TAG;
        header.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
        let pn_at = header.len();
        header.extend_from_slice(&(pn as u16).to_be_bytes());
        let mut sealed = frames;
        packet_key(&keys.key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce(&keys.iv, pn)),
                Aad::from(&header),
                &mut sealed,
            )
            .unwrap();
        let mut packet = [header, sealed].concat();
        let mask = mask(&keys.hp, &packet[pn_at + 4..pn_at + 4 + SAMPLE]);
        packet[0] ^= mask[0] & 0x0f;
        packet[pn_at] ^= mask[1];
        packet[pn_at + 1] ^= mask[2];
        packet
    }

    fn version_type(version: u32) -> u8 {
        super::version(version).unwrap().initial_type
    }

    fn encode_varint(v: u64) -> Vec<u8> {
        assert!(v < 1 << 30);
        (0x8000_0000 | v as u32).to_be_bytes().to_vec()
    }

    #[test]
    fn a_second_connection_on_an_allowed_flow_is_told_from_the_first() {
        let first = b"\x01\x02\x03\x04\x05\x06\x07\x08";
        let known = [Origin {
            version: V1,
            dcid: first.to_vec(),
        }];
        let hello_a = hello("a.test", 100, false);
        let opening = initial(V1, first, 0, 0, &hello_a);
        assert_eq!(
            initial_origin(&opening),
            Ok(Some(known[0].clone())),
            "the origin is the header's ID"
        );
        assert_eq!(again(&opening, &known), Again::New, "a hello, even resent");
        let acks = initial_keyed(V1, first, b"server-chosen", 1, 0, b"");
        assert_eq!(
            again(&acks, &known),
            Again::Known,
            "the same connection's ACKs"
        );
        let resent = initial_keyed(V1, first, b"server-chosen", 2, 0, &hello_a);
        assert_eq!(again(&resent, &known), Again::New, "a hello is read again");
        assert_eq!(
            initial_name_keyed(&[&resent], &known),
            Seen::Name("a.test".into()),
            "with the first keys"
        );
        assert!(matches!(initial_name(&[&resent]), Seen::Malformed(_)));
        let reused = initial(V1, first, 3, 0, &hello("evil.test", 100, false));
        assert_eq!(
            again(&reused, &known),
            Again::New,
            "the same ID, a new hello"
        );
        let other = initial(V1, b"another-id", 0, 0, &hello("evil.test", 100, false));
        assert_eq!(again(&other, &known), Again::New);
        // A Handshake packet: type 2, and no token field.
        let token_at = 6 + b"server-chosen".len() + 1;
        let handshake = [&[0xe0][..], &acks[1..token_at], &acks[token_at + 1..]].concat();
        assert_eq!(again(&handshake, &known), Again::Known, "not an Initial");
        let mut hollow = handshake.clone();
        hollow[token_at..token_at + 2].copy_from_slice(&[0x40, 0x00]);
        assert!(
            matches!(again(&hollow, &known), Again::Refused(_)),
            "a packet too short to hold a packet number and a tag"
        );
        // Another connection's Initial coalesced behind a known ACK-only
        // Initial, or behind a Handshake packet, is read.
        let evil = initial(V1, b"evil-id", 0, 0, &hello("evil.test", 100, false));
        for front in [&acks, &handshake] {
            let coalesced = [front.as_slice(), &evil].concat();
            assert_eq!(again(&coalesced, &known), Again::New);
            assert_eq!(
                initial_name_keyed(&[&coalesced], &known),
                Seen::Name("evil.test".into())
            );
        }
        assert_eq!(again(b"\x40short", &known), Again::Known);
        let mut unknown = other.clone();
        unknown[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
        assert!(matches!(again(&unknown, &known), Again::Refused(_)));
        let mut v2 = initial(V2, first, 0, 0, &hello_a);
        assert_eq!(
            again(&v2, &known),
            Again::New,
            "another version, other keys"
        );
        v2.truncate(7);
        assert!(matches!(again(&v2, &known), Again::Refused(_)));
    }

    #[test]
    fn the_name_is_read_from_one_initial_of_either_version() {
        let hello = hello("Quic.Example.test", 100, false);
        for version in [V1, V2] {
            let packet = initial(version, b"\x01\x02\x03\x04\x05\x06\x07\x08", 0, 0, &hello);
            assert_eq!(
                initial_name(&[&packet]),
                Seen::Name("quic.example.test".into())
            );
        }
    }

    #[test]
    fn a_hello_over_two_datagrams_in_any_order_is_joined() {
        let hello = hello("a.test", 1500, true);
        let (one, two) = hello.split_at(1000);
        let dcid = b"\x0a\x0b\x0c\x0d";
        let first = initial(V1, dcid, 0, 0, one);
        let second = initial(V1, dcid, 1, 1000, two);
        assert_eq!(initial_name(&[&first]), Seen::NeedMore);
        assert_eq!(initial_name(&[&second]), Seen::NeedMore);
        assert_eq!(
            initial_name(&[&second, &first]),
            Seen::Name("a.test".into())
        );
    }

    #[test]
    fn what_is_not_a_readable_initial_is_malformed() {
        let hello = hello("a.test", 10, false);
        let mut packet = initial(V1, b"\x01\x02\x03\x04", 0, 0, &hello);
        let last = packet.len() - 1;
        packet[last] ^= 1;
        assert!(matches!(initial_name(&[&packet]), Seen::Malformed(_)));
        let mut other_version = initial(V1, b"\x01\x02\x03\x04", 0, 0, &hello);
        other_version[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
        assert!(matches!(
            initial_name(&[&other_version]),
            Seen::Malformed(_)
        ));
        assert!(matches!(
            initial_name(&[b"not quic at all"]),
            Seen::Malformed(_)
        ));
        assert!(matches!(initial_name(&[&[0xc0, 0, 0]]), Seen::Malformed(_)));
    }
}
