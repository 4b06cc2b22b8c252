//! What the credential proxy changes in a request: the placeholder becomes
//! the real value in its head (headers, also inside Basic authorization,
//! and the target). Pure byte work, no I/O; `redact` undoes it in what
//! comes back.

use base64::Engine;

/// One credential as the proxy uses it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The bottle's environment variable (for messages).
    pub env: String,
    pub placeholder: Vec<u8>,
    pub real: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("env", &self.env)
            .field("placeholder", &String::from_utf8_lossy(&self.placeholder))
            .finish_non_exhaustive()
    }
}

/// Every occurrence of `from` in `data` replaced by `to`; `None` if there
/// was none.
pub fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() {
        return None;
    }
    let mut found = memchr::memmem::find_iter(data, from).peekable();
    found.peek()?;
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0;
    for i in found {
        out.extend_from_slice(&data[at..i]);
        out.extend_from_slice(to);
        at = i + from.len();
    }
    out.extend_from_slice(&data[at..]);
    Some(out)
}

/// `data` with every `from` of `pairs` replaced by its `to`, one pair
/// after the other; `None` if none occurred.
fn replace_all<'a>(
    data: &[u8],
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Option<Vec<u8>> {
    let mut current: Option<Vec<u8>> = None;
    for (from, to) in pairs {
        if let Some(v) = replace(current.as_deref().unwrap_or(data), from, to) {
            current = Some(v);
        }
    }
    current
}

/// Each secret's placeholder, then its real value.
fn placeholder_to_real(secrets: &[Secret]) -> impl Iterator<Item = (&[u8], &[u8])> {
    secrets
        .iter()
        .map(|s| (s.placeholder.as_slice(), s.real.as_slice()))
}

pub fn contains(data: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(data, needle).is_some()
}

/// A request head value after the swap.
#[derive(Debug, PartialEq, Eq)]
pub struct Swapped {
    pub value: Vec<u8>,
    /// Basic credentials the swap encoded with a real value inside, and
    /// the bottle's own encoding they replaced: an echo of the first is
    /// given back as the second (`redact`).
    pub encoded: Option<(Vec<u8>, Vec<u8>)>,
}

/// A request head value with the placeholders of `secrets` swapped for
/// their real values, also inside `Basic` credentials; `None` if it holds
/// none.
pub fn swap_value(value: &[u8], secrets: &[Secret]) -> Option<Swapped> {
    let plain = replace_all(value, placeholder_to_real(secrets));
    let current = plain.as_deref().unwrap_or(value);
    swap_basic(current, secrets).or_else(|| {
        plain.map(|value| Swapped {
            value,
            encoded: None,
        })
    })
}

/// `Basic BASE64(user:password)` with a placeholder inside, re-encoded;
/// with the new encoding and the one it replaced.
fn swap_basic(value: &[u8], secrets: &[Secret]) -> Option<Swapped> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let decoded = engine.decode(encoded.trim()).ok()?;
    let swapped = replace_all(&decoded, placeholder_to_real(secrets))?;
    let made = engine.encode(swapped);
    Some(Swapped {
        value: format!("{scheme} {made}").into_bytes(),
        encoded: Some((made.into_bytes(), encoded.trim().as_bytes().to_vec())),
    })
}

/// The secrets among `others` whose placeholder (plain or in Basic
/// credentials) `value` carries.
pub fn placeholders_in<'a>(value: &[u8], others: &'a [Secret]) -> Vec<&'a Secret> {
    others
        .iter()
        .filter(|s| {
            contains(value, &s.placeholder) || swap_basic(value, std::slice::from_ref(*s)).is_some()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(env: &str, placeholder: &str, real: &str) -> Secret {
        Secret {
            env: env.into(),
            placeholder: placeholder.into(),
            real: real.into(),
        }
    }

    #[test]
    fn placeholders_become_real_values_in_headers_and_basic_credentials() {
        let s = [secret("K", "rbm-ph-1", "sk-real-1")];
        assert_eq!(
            swap_value(b"Bearer rbm-ph-1", &s).unwrap(),
            Swapped {
                value: b"Bearer sk-real-1".to_vec(),
                encoded: None
            }
        );
        assert_eq!(swap_value(b"no secret here", &s), None);
        let engine = base64::engine::general_purpose::STANDARD;
        let basic = format!("Basic {}", engine.encode("user:rbm-ph-1"));
        let swapped = swap_value(basic.as_bytes(), &s).unwrap();
        let (made, sent) = swapped.encoded.unwrap();
        assert_eq!(sent, basic.strip_prefix("Basic ").unwrap().as_bytes());
        let text = String::from_utf8(swapped.value).unwrap();
        assert_eq!(text.strip_prefix("Basic ").unwrap().as_bytes(), made);
        let decoded = engine.decode(text.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(decoded, b"user:sk-real-1");
        assert_eq!(placeholders_in(basic.as_bytes(), &s).len(), 1);
        assert!(placeholders_in(b"x rbm-ph-1 y", &s).len() == 1);
        assert!(placeholders_in(b"nothing", &s).is_empty());
    }
}
