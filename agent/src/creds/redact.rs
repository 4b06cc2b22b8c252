//! What the credential proxy takes out of what comes back from a real
//! host: each real value, replaced by its placeholder, in the answer's
//! head and in its body as it streams. Byte work, no I/O of its own.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use hyper::body::Incoming;

use super::swap::{contains, replace_all, Secret};

/// Replaces each secret's real value by its placeholder in a stream of
/// chunks, across chunk boundaries: it holds back only the bytes at a
/// chunk's end that could start a real value.
#[derive(Debug)]
pub struct Redactor {
    secrets: Vec<(Vec<u8>, Vec<u8>)>,
    carry: Vec<u8>,
}

impl Redactor {
    pub fn new(secrets: &[Secret]) -> Redactor {
        Redactor {
            secrets: secrets
                .iter()
                .filter(|s| !s.real.is_empty())
                .map(|s| (s.real.clone(), s.placeholder.clone()))
                .collect(),
            carry: Vec::new(),
        }
    }

    /// The whole of a value at once (a header).
    pub fn redact_all(&self, data: &[u8]) -> Option<Vec<u8>> {
        replace_all(
            data,
            self.secrets
                .iter()
                .map(|(real, placeholder)| (real.as_slice(), placeholder.as_slice())),
        )
    }

    /// What of `chunk` (after what was held back) can go out now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return chunk.to_vec();
        }
        let mut data = std::mem::take(&mut self.carry);
        if data.is_empty() && !self.secrets.iter().any(|(real, _)| contains(chunk, real)) {
            // The common case: nothing to redact, nothing held back before.
            let hold = self.partial_suffix(chunk);
            self.carry = chunk[chunk.len() - hold..].to_vec();
            return chunk[..chunk.len() - hold].to_vec();
        }
        data.extend_from_slice(chunk);
        let mut data = self.redact_all(&data).unwrap_or(data);
        let hold = self.partial_suffix(&data);
        self.carry = data.split_off(data.len() - hold);
        data
    }

    /// What was held back, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }

    /// The length of the longest end of `data` that is a proper start of
    /// some real value.
    fn partial_suffix(&self, data: &[u8]) -> usize {
        self.secrets
            .iter()
            .map(|(real, _)| {
                (1..real.len().min(data.len() + 1))
                    .rev()
                    .find(|&n| data.ends_with(&real[..n]))
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
    trailers: Option<Frame<Bytes>>,
    done: bool,
}

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
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        loop {
            if let Some(trailers) = self.trailers.take() {
                return Poll::Ready(Some(Ok(trailers)));
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
                    Err(trailers) => {
                        self.trailers = Some(trailers);
                        let rest = self.redactor.finish();
                        if !rest.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
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

    fn secret(env: &str, placeholder: &str, real: &str) -> Secret {
        Secret {
            env: env.into(),
            placeholder: placeholder.into(),
            real: real.into(),
        }
    }

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
}
