//! What `rbm-probe send --quic` puts on the wire: a QUIC version 1 client's
//! first Initial packets (RFC 9000 and 9001), carrying a ClientHello in
//! CRYPTO frames and padded to 1200 bytes, protected with the keys every
//! observer can derive from the Destination Connection ID.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

const VERSION_1: u32 = 1;
const INITIAL_SALT: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// Clients pad the datagrams that carry Initials to at least this.
const MIN_DATAGRAM: usize = 1200;
const DCID: [u8; 8] = [0x52, 0x42, 0x4d, 0x70, 0x72, 0x6f, 0x62, 0x65];
/// The connection ID of `send --after-quic`'s first connection ("RBMfirst").
pub const FIRST_DCID: [u8; 8] = *b"RBMfirst";

fn label(secret: &Hkdf<Sha256>, name: &[u8], out: &mut [u8]) {
    let mut info = (out.len() as u16).to_be_bytes().to_vec();
    info.push((6 + name.len()) as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(name);
    info.push(0);
    secret.expand(&info, out).expect("small fixed lengths");
}

/// The ClientHello handshake message inside `record` (one TLS record).
fn handshake_message(record: &[u8]) -> &[u8] {
    &record[5..]
}

/// Datagrams of Initial packets carrying the ClientHello in `record`: one,
/// or two when `split` cuts the CRYPTO data there (the name in the second).
pub fn initials(record: &[u8], split: Option<usize>) -> Vec<Vec<u8>> {
    initials_of(&DCID, record, split)
}

/// `initials`, of a connection with another Destination Connection ID.
pub fn initials_of(dcid: &[u8; 8], record: &[u8], split: Option<usize>) -> Vec<Vec<u8>> {
    let hello = handshake_message(record);
    let cut = split.unwrap_or(hello.len()).min(hello.len());
    let (first, second) = hello.split_at(cut);
    let mut out = vec![packet(dcid, 0, 0, first)];
    if !second.is_empty() {
        out.push(packet(dcid, 1, cut as u64, second));
    }
    out
}

fn varint(v: u64) -> [u8; 4] {
    (0x8000_0000 | v as u32).to_be_bytes()
}

fn packet(dcid: &[u8; 8], number: u64, offset: u64, crypto: &[u8]) -> Vec<u8> {
    let (_, initial) = Hkdf::<Sha256>::extract(Some(&INITIAL_SALT), dcid);
    let mut client = [0u8; 32];
    label(&initial, b"client in", &mut client);
    let client = Hkdf::<Sha256>::from_prk(&client).expect("a 32-byte key");
    let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
    label(&client, b"quic key", &mut key);
    label(&client, b"quic iv", &mut iv);
    label(&client, b"quic hp", &mut hp);

    let mut frames = vec![0x06];
    frames.extend(varint(offset));
    frames.extend(varint(crypto.len() as u64));
    frames.extend_from_slice(crypto);
    let mut header = vec![0xc1];
    header.extend_from_slice(&VERSION_1.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.extend_from_slice(&[0, 0]); // no source ID, no token
    let fixed = header.len() + 4 + 2 + 16;
    frames.resize(frames.len().max(MIN_DATAGRAM - fixed), 0); // PADDING
    let length = 2 + frames.len() + 16;
    header.extend(varint(length as u64));
    let pn_at = header.len();
    header.extend_from_slice(&(number as u16).to_be_bytes());
    let mut nonce = iv;
    for (b, p) in nonce[4..].iter_mut().zip(number.to_be_bytes()) {
        *b ^= p;
    }
    let sealed = Aes128Gcm::new(&key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &frames,
                aad: &header,
            },
        )
        .expect("encryption does not fail");
    let mut out = [header, sealed].concat();
    let mut mask = aes::Block::clone_from_slice(&out[pn_at + 4..pn_at + 20]);
    Aes128::new(&hp.into()).encrypt_block(&mut mask);
    out[0] ^= mask[0] & 0x0f;
    out[pn_at] ^= mask[1];
    out[pn_at + 1] ^= mask[2];
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::hello::client_hello;

    #[test]
    fn initials_are_padded_and_split_where_asked() {
        let record = client_hello(Some("a.test"));
        let one = initials(&record, None);
        assert_eq!(one.len(), 1);
        assert!(one[0].len() > record.len());
        let two = initials(&record, Some(600));
        assert_eq!(two.len(), 2);
        assert!(two.iter().all(|d| d.len() >= MIN_DATAGRAM));
    }
}
