//! What the credential proxy changes in a request: the placeholder becomes
//! the real value where the credential goes (`Places`: Authorization, also
//! inside Basic credentials, the credential's headers and its one query
//! parameter) and nowhere else. Pure byte work, no I/O; `redact` undoes
//! it in what comes back.

use base64::Engine;

/// One credential as the proxy uses it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The bottle's environment variable (for messages).
    pub env: String,
    pub placeholder: Vec<u8>,
    pub real: Vec<u8>,
    pub places: Places,
}

/// Where in a request a credential's real value goes. Everywhere else the
/// placeholder stays: a bottle that writes it into a path, an issue's
/// title or any header the host stores and shows would have the host
/// publish the real value, so only the places an API reads its key from
/// get it. The default is Authorization alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places {
    /// Header names besides Authorization (which always is one), lowercase.
    pub headers: Vec<String>,
    /// The query parameter whose value, when it is exactly the
    /// placeholder, becomes the real value.
    pub query: Option<String>,
}

impl Places {
    /// Whether the header `name` (lowercase, as `http` keeps it) is one.
    pub fn header(&self, name: &str) -> bool {
        name == "authorization" || self.headers.iter().any(|h| h == name)
    }
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

pub fn contains(data: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(data, needle).is_some()
}

/// Encodings of real values a swap made, each with what the bottle sent in
/// its place.
pub type Made = Vec<(Vec<u8>, Vec<u8>)>;

/// A request head value after the swap.
#[derive(Debug, PartialEq, Eq)]
pub struct Swapped {
    pub value: Vec<u8>,
    /// Basic credentials the swap encoded with a real value inside, and
    /// the bottle's own encoding they replaced: an echo of the first is
    /// given back as the second (`redact`).
    pub encoded: Option<(Vec<u8>, Vec<u8>)>,
}

/// The value of the header `name` (lowercase) with the placeholders of
/// those `secrets` that go in this header swapped for their real values,
/// also inside `Basic` credentials; `None` if it holds none of them.
pub fn swap_header(name: &str, value: &[u8], secrets: &[Secret]) -> Option<Swapped> {
    let here: Vec<&Secret> = secrets.iter().filter(|s| s.places.header(name)).collect();
    swap_value(value, &here)
}

/// `value` with a placeholder of `secrets` swapped for its real value,
/// where a credential is: the whole value (`x-api-key: PH`), the one word
/// after a scheme (`Bearer PH`, `token PH`), or in `Basic` credentials the
/// whole user or the whole password; `None` otherwise. A placeholder inside
/// anything longer (`Digest username="PH"`, an OAuth callback, a Basic user
/// `x-PH`, `note PH note`) stays what it is: a host stores and shows such
/// values (audit logs of failed logins, callbacks it follows).
fn swap_value(value: &[u8], secrets: &[&Secret]) -> Option<Swapped> {
    let text = value.trim_ascii();
    let whole = |s: &&&Secret| text == s.placeholder.as_slice();
    if let Some(s) = secrets.iter().find(whole) {
        return Some(Swapped {
            value: s.real.clone(),
            encoded: None,
        });
    }
    let space = text.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = (&text[..space], &text[space + 1..]);
    if scheme.eq_ignore_ascii_case(b"basic") {
        return swap_basic(scheme, rest, secrets);
    }
    let token = !scheme.is_empty()
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+".contains(b));
    let s = secrets
        .iter()
        .find(|s| rest == s.placeholder.as_slice())
        .filter(|_| token)?;
    Some(Swapped {
        value: [scheme, b" ", &s.real].concat(),
        encoded: None,
    })
}

/// `Basic BASE64(user:password)` whose user or password is exactly a
/// placeholder (git takes a token as either), re-encoded; with the new
/// encoding and the one it replaced.
fn swap_basic(scheme: &[u8], encoded: &[u8], secrets: &[&Secret]) -> Option<Swapped> {
    let engine = base64::engine::general_purpose::STANDARD;
    let decoded = engine.decode(encoded).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    let swapped = secrets.iter().find_map(|s| {
        if password == s.placeholder.as_slice() {
            Some([user, b":", &s.real].concat())
        } else if user == s.placeholder.as_slice() {
            Some([&s.real[..], b":", password].concat())
        } else {
            None
        }
    })?;
    let made = engine.encode(swapped);
    Some(Swapped {
        value: [scheme, b" ", made.as_bytes()].concat(),
        encoded: Some((made.into_bytes(), encoded.to_vec())),
    })
}

/// Whether `value` is Basic credentials that hold `s`'s placeholder
/// anywhere.
fn in_basic(value: &[u8], s: &Secret) -> bool {
    let text = value.trim_ascii();
    let Some(space) = text.iter().position(|b| *b == b' ') else {
        return false;
    };
    if !text[..space].eq_ignore_ascii_case(b"basic") {
        return false;
    }
    let engine = base64::engine::general_purpose::STANDARD;
    engine
        .decode(text[space + 1..].trim_ascii())
        .is_ok_and(|decoded| contains(&decoded, &s.placeholder))
}

/// The secrets among `others` whose placeholder (plain or in Basic
/// credentials) `value` carries.
pub fn placeholders_in<'a>(value: &[u8], others: &'a [Secret]) -> Vec<&'a Secret> {
    others
        .iter()
        .filter(|s| contains(value, &s.placeholder) || in_basic(value, s))
        .collect()
}

/// A request target (path and query) whose query parameter named in a
/// secret's `Places` is exactly that secret's placeholder, with the real
/// value there (percent-encoded), and the encodings it made that differ
/// from the real value, each with the placeholder it replaced (`redact`
/// gives them back as such); `None` if there was no such parameter.
///
/// Only a whole value equal to the placeholder is swapped, compared as the
/// bytes are: a placeholder inside a longer value, in another parameter
/// or in the path stays what it is.
pub fn swap_query(target: &str, secrets: &[Secret]) -> Option<(String, Made)> {
    let (path, query) = target.split_once('?')?;
    let mut swapped = false;
    let mut made = Vec::new();
    let params: Vec<String> = query
        .split('&')
        .map(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return param.to_string();
            };
            let goes_here = secrets.iter().find(|s| {
                s.places.query.as_deref() == Some(name) && value.as_bytes() == s.placeholder
            });
            match goes_here {
                Some(s) => {
                    swapped = true;
                    let encoded = percent_encode(&s.real);
                    if encoded.as_bytes() != s.real.as_slice() {
                        made.push((encoded.clone().into_bytes(), s.placeholder.clone()));
                    }
                    format!("{name}={encoded}")
                }
                None => param.to_string(),
            }
        })
        .collect();
    swapped.then(|| (format!("{path}?{}", params.join("&")), made))
}

/// `data` with every byte but the unreserved ones (RFC 3986) written `%XX`:
/// a real value goes into a query as one parameter value, whatever it holds.
fn percent_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len());
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A credential that goes in Authorization only.
    pub(crate) fn secret(env: &str, placeholder: &str, real: &str) -> Secret {
        Secret {
            env: env.into(),
            placeholder: placeholder.into(),
            real: real.into(),
            places: Places::default(),
        }
    }

    #[test]
    fn placeholders_become_real_values_in_headers_and_basic_credentials() {
        let s = [secret("K", "rbm-ph-1", "sk-real-1")];
        assert_eq!(
            swap_header("authorization", b"Bearer rbm-ph-1", &s).unwrap(),
            Swapped {
                value: b"Bearer sk-real-1".to_vec(),
                encoded: None
            }
        );
        assert_eq!(swap_header("authorization", b"no secret here", &s), None);
        let engine = base64::engine::general_purpose::STANDARD;
        let basic = format!("Basic {}", engine.encode("user:rbm-ph-1"));
        let swapped = swap_header("authorization", basic.as_bytes(), &s).unwrap();
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

    #[test]
    fn a_placeholder_inside_a_longer_value_stays_what_it_is() {
        let mut s = secret("K", "rbm-ph-1", "sk-real-1");
        s.places.headers = vec!["x-api-key".into()];
        let s = [s];
        let engine = base64::engine::general_purpose::STANDARD;
        for (name, value) in [
            (
                "authorization",
                "Digest username=\"rbm-ph-1\", uri=\"/\"".to_string(),
            ),
            (
                "authorization",
                "OAuth oauth_callback=\"https://evil/?rbm-ph-1\"".into(),
            ),
            ("authorization", "Bearer rbm-ph-1 rbm-ph-1".into()),
            (
                "authorization",
                format!("Basic {}", engine.encode("x-rbm-ph-1:pw")),
            ),
            (
                "authorization",
                format!("Basic {}", engine.encode("user:rbm-ph-1x")),
            ),
            ("x-api-key", "note rbm-ph-1 note".into()),
        ] {
            assert_eq!(
                swap_header(name, value.as_bytes(), &s),
                None,
                "{name}: {value}"
            );
        }
        // The whole user of Basic credentials (git takes a token there).
        let user = format!("Basic {}", engine.encode("rbm-ph-1:x-oauth-basic"));
        let swapped = swap_header("authorization", user.as_bytes(), &s).unwrap();
        let made = String::from_utf8(swapped.encoded.unwrap().0).unwrap();
        assert_eq!(engine.decode(made).unwrap(), b"sk-real-1:x-oauth-basic");
        assert_eq!(
            swap_header("authorization", b"token rbm-ph-1", &s)
                .unwrap()
                .value,
            b"token sk-real-1"
        );
        // Still refused when it names another credential's host.
        assert_eq!(placeholders_in(user.as_bytes(), &s).len(), 1);
        let embedded = format!("Basic {}", engine.encode("x-rbm-ph-1:pw"));
        assert_eq!(placeholders_in(embedded.as_bytes(), &s).len(), 1);
    }

    #[test]
    fn the_real_value_goes_in_authorization_and_the_credentials_headers_only() {
        let mut s = secret("K", "rbm-ph-1", "sk-real-1");
        s.places.headers = vec!["x-api-key".into(), "x-custom-key".into()];
        let other = secret("O", "rbm-ph-2", "sk-real-2");
        let s = [s, other];
        let swapped = |name: &str, value: &[u8]| swap_header(name, value, &s).map(|v| v.value);
        assert_eq!(
            swapped("x-api-key", b"rbm-ph-1"),
            Some(b"sk-real-1".to_vec())
        );
        assert_eq!(
            swapped("x-custom-key", b"rbm-ph-1"),
            Some(b"sk-real-1".to_vec())
        );
        assert_eq!(swapped("x-title", b"rbm-ph-1"), None);
        assert_eq!(swapped("cookie", b"k=rbm-ph-1"), None);
        // Each credential in its own places: O goes in Authorization only.
        assert_eq!(swapped("x-api-key", b"rbm-ph-2"), None);
        assert_eq!(
            swapped("authorization", b"Bearer rbm-ph-2"),
            Some(b"Bearer sk-real-2".to_vec())
        );
    }

    #[test]
    fn a_query_parameter_gets_the_real_value_only_when_it_is_exactly_the_placeholder() {
        let mut s = secret("K", "rbm-ph-1", "sk real&1");
        s.places.query = Some("key".into());
        let s = [s];
        let (target, made) = swap_query("/v1/rbm-ph-1?title=rbm-ph-1&key=rbm-ph-1&q", &s).unwrap();
        assert_eq!(target, "/v1/rbm-ph-1?title=rbm-ph-1&key=sk%20real%261&q");
        assert_eq!(made, [(b"sk%20real%261".to_vec(), b"rbm-ph-1".to_vec())]);
        for target in [
            "/v1/rbm-ph-1",
            "/v1?title=rbm-ph-1",
            "/v1?key=x-rbm-ph-1",
            "/v1?KEY=rbm-ph-1",
            "/v1?k%65y=rbm-ph-1",
            "/v1?keys=rbm-ph-1",
        ] {
            assert_eq!(swap_query(target, &s), None, "{target}");
        }
        let plain = [secret("K", "rbm-ph-1", "sk-real-1")];
        assert_eq!(swap_query("/v1?key=rbm-ph-1", &plain), None);
        let mut unencoded = secret("K", "rbm-ph-1", "sk-real-1");
        unencoded.places.query = Some("key".into());
        let (target, made) = swap_query("/v1?key=rbm-ph-1", &[unencoded]).unwrap();
        assert_eq!((target.as_str(), made.len()), ("/v1?key=sk-real-1", 0));
    }
}
