//! What the credential proxy takes out of what comes back from a real
//! host: each real value, replaced by its placeholder, in the answer's
//! head and in its body as it streams. Byte work, no I/O of its own.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;

use super::swap::{contains, Secret};

/// Replaces each form of a real value the sentry puts on the wire by the
/// same form of its placeholder, in a head at once or in a stream of
/// chunks, across chunk boundaries: it holds back only the bytes at a
/// chunk's end that could start a form.
pub struct Redactor {
    /// Each form of a real value and what replaces it, longest first.
    forms: Vec<(Vec<u8>, Vec<u8>)>,
    /// The bytes a form starts with.
    first: [bool; 256],
    carry: Vec<u8>,
}

/// Without the forms: they are real values, and must not reach a log.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("forms", &self.forms.len())
            .field("held", &self.carry.len())
            .finish()
    }
}

/// What comes back is redacted for every form in which the sentry sent a
/// real value, or a host would plausibly write one back: the value itself
/// (a header, the target), the base64 of the value alone (either
/// alphabet, padded or not: what an echo of a decoded and re-encoded
/// credential, or of a token built from it, shows) and its
/// percent-encoding (an echo of a target it was swapped into). The Basic
/// credentials the swap encodes are learned per request (`learn`).
fn forms(s: &Secret) -> Vec<(Vec<u8>, Vec<u8>)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    let mut out = vec![(s.real.clone(), s.placeholder.clone())];
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        out.push((
            engine.encode(&s.real).into_bytes(),
            engine.encode(&s.placeholder).into_bytes(),
        ));
    }
    for upper in [true, false] {
        out.push((
            percent_encode(&s.real, upper),
            percent_encode(&s.placeholder, upper),
        ));
    }
    out
}

/// Every byte but RFC 3986's unreserved ones as `%XX`.
fn percent_encode(data: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(data.len() * 3);
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                digits[usize::from(b >> 4)],
                digits[usize::from(b & 15)],
            ]);
        }
    }
    out
}

impl Redactor {
    pub fn new(secrets: &[Secret]) -> Redactor {
        let mut r = Redactor {
            forms: Vec::new(),
            first: [false; 256],
            carry: Vec::new(),
        };
        for (form, replacement) in secrets
            .iter()
            .filter(|s| !s.real.is_empty())
            .flat_map(forms)
        {
            r.learn(form, replacement);
        }
        r
    }

    /// Also replaces `form` (an encoding of a real value the sentry made)
    /// by `replacement` (what the bottle sent in its place).
    pub fn learn(&mut self, form: Vec<u8>, replacement: Vec<u8>) {
        if form.is_empty() || self.forms.iter().any(|(f, _)| *f == form) {
            return;
        }
        self.first[usize::from(form[0])] = true;
        self.forms.push((form, replacement));
        // A longer form first: one that holds a shorter is replaced whole.
        self.forms
            .sort_by_key(|(form, _)| std::cmp::Reverse(form.len()));
    }

    /// The whole of a value at once (a header).
    pub fn redact_all(&self, data: &[u8]) -> Option<Vec<u8>> {
        if !self.forms.iter().any(|(form, _)| contains(data, form)) {
            return None;
        }
        Some(self.scan(data, true).0)
    }

    /// `data` with each form replaced, left to right and the longest form
    /// first; unless `last`, up to where a form could still go on past the
    /// end of `data`: that rest is returned apart, to wait for more. (A
    /// form can be the start of a longer one: the base64 of a value
    /// without its padding, with it.)
    fn scan(&self, data: &[u8], last: bool) -> (Vec<u8>, Vec<u8>) {
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            if !self.first[usize::from(rest[0])] {
                out.push(rest[0]);
                i += 1;
                continue;
            }
            let open =
                |(form, _): &(Vec<u8>, Vec<u8>)| form.len() > rest.len() && form.starts_with(rest);
            if !last && self.forms.iter().any(open) {
                return (out, rest.to_vec());
            }
            match self.forms.iter().find(|(form, _)| rest.starts_with(form)) {
                Some((form, replacement)) => {
                    out.extend_from_slice(replacement);
                    i += form.len();
                }
                None => {
                    out.push(rest[0]);
                    i += 1;
                }
            }
        }
        (out, Vec::new())
    }

    /// Redacts a head's header values (an answer's, or its trailers);
    /// `Err` if a header's name holds a form of a real value: a name cannot
    /// be rewritten in place, so the answer must not go on.
    pub fn redact_headers(&self, headers: &mut HeaderMap) -> Result<(), String> {
        for name in headers.keys() {
            let lower = name.as_str().as_bytes();
            if self
                .forms
                .iter()
                .any(|(form, _)| contains(lower, &form.to_ascii_lowercase()))
            {
                return Err("a header's name holds the real value".into());
            }
        }
        for value in headers.values_mut() {
            if let Some(v) = self.redact_all(value.as_bytes()) {
                *value = HeaderValue::from_bytes(&v)
                    .map_err(|_| "a header's value holds the real value".to_string())?;
            }
        }
        Ok(())
    }

    /// Redacts an answer's head: its headers, and the HTTP/1.1 reason
    /// phrase hyper keeps when it is not the usual one and writes back to
    /// the bottle (replaced by its redaction, or dropped).
    pub fn redact_head(&self, head: &mut http::response::Parts) -> Result<(), String> {
        self.redact_headers(&mut head.headers)?;
        let reason = head.extensions.get::<ReasonPhrase>();
        if let Some(v) = reason.and_then(|r| self.redact_all(r.as_bytes())) {
            match ReasonPhrase::try_from(v) {
                Ok(redacted) => head.extensions.insert(redacted),
                Err(_) => head.extensions.remove::<ReasonPhrase>(),
            };
        }
        Ok(())
    }

    /// What of `chunk` (after what was held back) can go out now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.forms.is_empty() {
            return chunk.to_vec();
        }
        let mut data = std::mem::take(&mut self.carry);
        if data.is_empty() && !self.forms.iter().any(|(form, _)| contains(chunk, form)) {
            // The common case: nothing to redact, nothing held back before.
            let hold = self.partial_suffix(chunk);
            self.carry = chunk[chunk.len() - hold..].to_vec();
            return chunk[..chunk.len() - hold].to_vec();
        }
        data.extend_from_slice(chunk);
        let (out, held) = self.scan(&data, false);
        self.carry = held;
        out
    }

    /// What was held back, redacted, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.carry);
        self.scan(&held, true).0
    }

    /// The length of the longest end of `data` that is a proper start of
    /// some form.
    fn partial_suffix(&self, data: &[u8]) -> usize {
        self.forms
            .iter()
            .map(|(form, _)| {
                (1..form.len().min(data.len() + 1))
                    .rev()
                    .find(|&n| data.ends_with(&form[..n]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }
}

/// A response body with the real values redacted as it streams.
pub(super) struct Redacting {
    inner: Incoming,
    redactor: Redactor,
    /// Redacted, to go after what the redactor held back.
    trailers: Option<HeaderMap>,
    done: bool,
}

/// Why a redacting body ended early.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Redacting {
    pub(super) fn new(inner: Incoming, redactor: Redactor) -> Redacting {
        Redacting {
            inner,
            redactor,
            trailers: None,
            done: false,
        }
    }
}

impl Body for Redacting {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(trailers) = self.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(frame) => frame,
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = self.redactor.push(&data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(frame) => {
                        // Trailers (HTTP/2, or HTTP/1.1 chunked) are a
                        // head like the first: the real host can echo the
                        // value there as well. One that cannot be redacted
                        // ends the answer: its status is already sent, so
                        // the bottle gets a broken stream, not the value.
                        let Ok(mut trailers) = frame.into_trailers() else {
                            continue;
                        };
                        if let Err(reason) = self.redactor.redact_headers(&mut trailers) {
                            self.done = true;
                            return Poll::Ready(Some(Err(format!("trailers: {reason}").into())));
                        }
                        self.trailers = Some(trailers);
                        let rest = self.redactor.finish();
                        if !rest.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    self.done = true;
                    let rest = self.redactor.finish();
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::creds::swap::tests::secret;

    #[test]
    fn real_values_are_redacted_across_chunk_boundaries() {
        let s = [secret("K", "rbm-ph-1", "sk-real-1")];
        let text = b"data: here is sk-real-1 and sk-real-1, sk-real no\n";
        for cut in 1..text.len() {
            let mut r = Redactor::new(&s);
            let mut out = Vec::new();
            for chunk in text.chunks(cut) {
                out.extend(r.push(chunk));
            }
            out.extend(r.finish());
            assert_eq!(
                out, b"data: here is rbm-ph-1 and rbm-ph-1, sk-real no\n",
                "chunks of {cut}"
            );
        }
        let mut r = Redactor::new(&s);
        assert_eq!(r.push(b"plain text"), b"plain text", "nothing held back");
        assert_eq!(r.push(b" then sk-re"), b" then ", "a possible start waits");
        assert_eq!(r.push(b"ad"), b"sk-read");
    }

    #[test]
    fn a_real_value_echoed_encoded_comes_back_as_the_placeholder_encoded_alike() {
        let s = [secret("K", "rbm-ph-1", "sk+real/1=")];
        let mut r = Redactor::new(&s);
        r.learn(b"made-by-the-swap".to_vec(), b"sent-by-the-bottle".to_vec());
        for (echo, back) in [
            ("q=sk%2Breal%2F1%3D&x", "q=rbm-ph-1&x"),
            ("q=sk%2breal%2f1%3d", "q=rbm-ph-1"),
            ("c2srcmVhbC8xPQ== and", "cmJtLXBoLTE= and"),
            ("c2srcmVhbC8xPQ", "cmJtLXBoLTE"),
            ("auth: made-by-the-swap", "auth: sent-by-the-bottle"),
        ] {
            assert_eq!(
                r.redact_all(echo.as_bytes()).as_deref(),
                Some(back.as_bytes()),
                "{echo}"
            );
            let mut out = Vec::new();
            for b in echo.bytes() {
                out.extend(r.push(&[b]));
            }
            out.extend(r.finish());
            assert_eq!(out, back.as_bytes(), "{echo}, a byte at a time");
        }
    }
}
