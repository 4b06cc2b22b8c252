//! What `rbm-probe send` puts on the wire: a TLS 1.3 ClientHello shaped
//! like a current browser's (a post-quantum key share makes it larger than
//! one segment; the server name comes last, as extension shuffling can
//! put it), or an HTTP/1.1 request.

/// X25519MLKEM768: 1184 bytes of ML-KEM-768 key and 32 of X25519.
const HYBRID_GROUP: u16 = 0x11ec;
const HYBRID_SHARE: usize = 1216;
const X25519: u16 = 0x001d;
const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;

fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut e = kind.to_be_bytes().to_vec();
    e.extend_from_slice(&(body.len() as u16).to_be_bytes());
    e.extend_from_slice(body);
    e
}

/// `items` with a length prefix of `width` bytes.
fn vector(width: usize, items: &[u8]) -> Vec<u8> {
    let mut v = (items.len() as u32).to_be_bytes()[4 - width..].to_vec();
    v.extend_from_slice(items);
    v
}

fn server_name(name: &str) -> Vec<u8> {
    let mut entry = vec![0u8];
    entry.extend(vector(2, name.as_bytes()));
    extension(0x0000, &vector(2, &entry))
}

/// One TLS record holding a ClientHello for `name` (no server name
/// extension at all when `None`).
pub fn client_hello(name: Option<&str>) -> Vec<u8> {
    let mut shares = Vec::new();
    shares.extend_from_slice(&HYBRID_GROUP.to_be_bytes());
    shares.extend(vector(2, &[0x5a; HYBRID_SHARE]));
    shares.extend_from_slice(&X25519.to_be_bytes());
    shares.extend(vector(2, &[0x3c; 32]));
    let groups: Vec<u8> = [HYBRID_GROUP, X25519]
        .iter()
        .flat_map(|g| g.to_be_bytes())
        .collect();
    let mut extensions = [
        extension(0x002b, &vector(1, &[3, 4])),
        extension(0x000a, &vector(2, &groups)),
        extension(0x000d, &vector(2, &[4, 3, 8, 4])),
        extension(0x0033, &vector(2, &shares)),
        extension(0x0010, &vector(2, b"\x02h2\x08http/1.1")),
        extension(0x002d, &vector(1, &[1])),
        extension(0x0017, &[]),
        extension(0xff01, &[0]),
        // Padding, as browsers add, to a size past one segment.
        extension(0x0015, &[0; 400]),
    ]
    .concat();
    if let Some(name) = name {
        extensions.extend(server_name(name));
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.extend(vector(1, &[0x22; 32]));
    body.extend(vector(2, &[0x13, 0x01, 0x13, 0x02, 0x13, 0x03]));
    body.extend(vector(1, &[0]));
    body.extend(vector(2, &extensions));
    let mut message = vec![CLIENT_HELLO];
    message.extend(vector(3, &body));
    let mut record = vec![HANDSHAKE, 3, 1];
    record.extend(vector(2, &message));
    record
}

/// A GET request for `/` with this Host header.
pub fn http_request(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rbm-probe\r\nAccept: */*\r\n\r\n")
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hello_spans_two_segments_and_ends_with_its_name() {
        let hello = client_hello(Some("a.test"));
        assert!(hello.len() > 1460, "{}", hello.len());
        assert!(hello.ends_with(b"a.test"));
        let record_len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
        assert_eq!(record_len + 5, hello.len());
        assert!(!client_hello(None).windows(6).any(|w| w == b"a.test"));
    }
}
