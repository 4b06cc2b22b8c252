//! A minimal gzip encoder for the world's `/gzip` answer: one DEFLATE
//! block with the fixed Huffman codes, literals only (RFC 1951 section
//! 3.2.6, RFC 1952). Its output holds no byte string of the input, as any
//! real compressor's would not: what a proxy that redacts plain bytes
//! cannot see.

/// `data`, gzip-encoded.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut bits = Bits::default();
    bits.push(1, 1); // BFINAL
    bits.push(1, 2); // BTYPE 01: fixed Huffman codes
    for &b in data {
        let (code, len) = match b {
            0..=143 => (0x30 + u32::from(b), 8),
            _ => (0x190 + u32::from(b) - 144, 9),
        };
        bits.push_code(code, len);
    }
    bits.push_code(0, 7); // end of block (256)
    out.extend(bits.finish());
    out.extend(crc32(data).to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out
}

/// DEFLATE's bit order: values least significant bit first, Huffman codes
/// most significant bit first.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    acc: u32,
    n: u32,
}

impl Bits {
    fn push(&mut self, value: u32, len: u32) {
        for i in 0..len {
            self.acc |= ((value >> i) & 1) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.bytes.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    fn push_code(&mut self, code: u32, len: u32) {
        let reversed = (0..len).fold(0, |r, i| r | (((code >> i) & 1) << (len - 1 - i)));
        self.push(reversed, len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.bytes.push(self.acc as u8);
        }
        self.bytes
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_is_gzips() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn the_output_holds_no_run_of_the_input() {
        let text = b"auth: Bearer sk-real-value";
        let z = gzip(text);
        assert!(!z.windows(4).any(|w| text.windows(4).any(|t| t == w)));
    }
}
