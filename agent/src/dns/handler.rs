//! The proxy behind hickory-server: decide, forward, filter, learn, answer.

use std::iter;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, Query, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecoder, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};

use super::answer::{cap_ttl, cname_chain, learn_items, strip_service_params, withhold_protected};
use super::cache::Cache;
use super::decide::{check_request, decide, echoable, Decision};
use super::upstream::{Resolve, Upstream};
use super::DnsError;
use super::Learner;
use crate::firewall::Learn;
use crate::policy::{Policy, PolicyCell};
use crate::profile::{normalize, Ports};
use crate::state::Shared;

/// Asks `U` for the names it forwards: the upstream resolvers, unless the
/// proxy is driven in memory (`dns::fuzz`).
pub(crate) struct Proxy<U = Upstream> {
    policy: Arc<PolicyCell>,
    learner: Arc<dyn Learner>,
    shared: Arc<Shared>,
    upstream: U,
    cache: Cache,
}

/// What goes back to the client besides the echoed question.
struct Reply {
    rcode: ResponseCode,
    answers: Vec<Record>,
}

impl Reply {
    fn error(rcode: ResponseCode) -> Reply {
        Reply {
            rcode,
            answers: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl<U: Resolve> RequestHandler for Proxy<U> {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        // Encodes the question: once a request.
        let echo = echoable(&request.queries);
        let reply = self.reply(request, echo).await;
        send(request, echo, reply, response_handle).await
    }
}

impl<U: Resolve> Proxy<U> {
    pub(crate) fn new(
        policy: Arc<PolicyCell>,
        learner: Arc<dyn Learner>,
        shared: Arc<Shared>,
        upstream: U,
    ) -> Proxy<U> {
        Proxy {
            policy,
            learner,
            shared,
            upstream,
            cache: Cache::default(),
        }
    }

    /// `echo`: whether the question can be echoed as sent (`echoable`).
    async fn reply(&self, request: &Request, echo: bool) -> Reply {
        let questions = request.queries.queries();
        let rcode = check_request(request.metadata.op_code, questions.len())
            .or((!echo).then_some(ResponseCode::FormErr));
        if let Some(rcode) = rcode {
            tracing::debug!(op = %request.metadata.op_code, questions = questions.len(), %rcode, "unsupported request");
            return Reply::error(rcode);
        }
        let query = questions[0].original();
        let name = normalize(&query.name.to_ascii());
        let policy = self.policy.get();
        let decision = decide(&policy, &name, query.query_type, query.query_class);
        tracing::debug!(%name, qtype = %query.query_type, ?decision, "query");
        match decision {
            Decision::Refuse(_) => {
                self.shared.record_refused(&name);
                Reply::error(ResponseCode::Refused)
            }
            Decision::Forward { grant } => self.forward(query, &name, grant, &policy).await,
        }
    }

    /// Asks upstream, keeps the CNAME chain, learns its addresses if
    /// granted. Any failure is SERVFAIL: no answer whose addresses are not
    /// open gets through.
    async fn forward(
        &self,
        query: &Query,
        name: &str,
        grant: Option<Ports>,
        policy: &Policy,
    ) -> Reply {
        let (rcode, mut answers) = match self.lookup(query, name).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(%name, %error, "no upstream DNS server answered; answering SERVFAIL");
                self.shared.count_failed();
                return Reply::error(ResponseCode::ServFail);
            }
        };
        if let (ResponseCode::NoError, Some(ports)) = (rcode, grant) {
            let (kept, withheld) = withhold_protected(answers, policy);
            if !withheld.is_empty() {
                tracing::warn!(%name, ?withheld, "the answer names protected addresses; withheld from the bottle");
            }
            answers = kept;
            if let Err(error) = self.learn(name, &mut answers, &ports, policy).await {
                tracing::error!(%name, %error, "cannot open the answered addresses; answering SERVFAIL");
                self.shared.count_failed();
                return Reply::error(ResponseCode::ServFail);
            }
        }
        self.shared.count_allowed();
        Reply { rcode, answers }
    }

    /// The answer to `query`: kept from an earlier query while its TTL
    /// lasts, else upstream's (only the CNAME chain, without ECH and
    /// address hints), kept if it has records.
    async fn lookup(
        &self,
        query: &Query,
        name: &str,
    ) -> Result<(ResponseCode, Vec<Record>), DnsError> {
        if let Some(answers) = self.cache.get(query) {
            self.shared.count_cached();
            return Ok((ResponseCode::NoError, answers));
        }
        let upstream_answer = self.upstream.resolve(query).await?;
        let rcode = upstream_answer.metadata.response_code;
        let mut answers = cname_chain(&query.name, query.query_type, &upstream_answer.answers);
        let stripped = strip_service_params(&mut answers);
        if stripped > 0 {
            tracing::debug!(%name, stripped, "ech and address hints stripped");
        }
        if rcode == ResponseCode::NoError {
            self.cache.put(query, &answers);
        }
        Ok((rcode, answers))
    }

    /// Opens every address in `answers` in one batch and records it. An
    /// address a recent answer already keeps open is not sent to the kernel
    /// again; its TTL is lowered to the time it stays open instead.
    async fn learn(
        &self,
        name: &str,
        answers: &mut [Record],
        ports: &Ports,
        policy: &Policy,
    ) -> Result<(), String> {
        // An alias of an inspected host (a CNAME to it) is that host: its
        // addresses go to the proxy, and a ruled one's on 443 only.
        let chain = chain_names(answers);
        let inspected = chain.iter().find(|n| policy.intercepts(n));
        let ruled =
            chain.iter().any(|n| policy.rules_for(n).is_some()) || policy.rules_for(name).is_some();
        let https_only = Ports::Only(std::iter::once(443).collect());
        let ports = if ruled { &https_only } else { ports };
        let name = match inspected {
            Some(host) if !policy.intercepts(name) => host.as_str(),
            _ => name,
        };
        let mut items = learn_items(answers, ports, policy);
        if ruled {
            self.shared.mark_ruled(items.iter().map(|i| i.addr));
        }
        // A credential host's addresses must reach the credential proxy's
        // set even if another name opened them first.
        let intercepted = policy.intercepts(name);
        items.retain(
            |item| match self.shared.still_open(item).filter(|_| !intercepted) {
                Some(left) => {
                    cap_ttl(answers, item.addr, left);
                    false
                }
                None => true,
            },
        );
        if items.is_empty() {
            return Ok(());
        }
        if !self.shared.has_room(items.len()) {
            self.shared.count_learned_full();
            return Err("the agent remembers as many open addresses as it may".into());
        }
        let shared = self.shared.clone();
        let owned_name = name.to_string();
        let sent = Instant::now();
        let record =
            Box::new(move |items: &[Learn]| shared.record_learned(&owned_name, items, sent));
        let count = items.len();
        match self.learner.learn(name, items, record).await {
            Ok(()) => {
                tracing::debug!(%name, addresses = count, "learned");
                Ok(())
            }
            Err(error) => {
                if error.is_full() {
                    self.shared.count_learned_full();
                }
                Err(error.to_string())
            }
        }
    }
}

/// Answers with the request's ID, RD and CD copied, RA set, the question
/// echoed if `echo` and `reply`'s records; hickory-server sets TC when they
/// do not fit the client's UDP size (512, or its EDNS size).
async fn send<R: ResponseHandler>(
    request: &Request,
    echo: bool,
    reply: Reply,
    mut response_handle: R,
) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = true;
    metadata.response_code = reply.rcode;
    let edns = response_edns(request);
    // A question that cannot be echoed as sent (it got FORMERR) is left
    // out, as hickory-server leaves out one that does not decode.
    let none = Queries::read(&mut BinDecoder::new(&[]), 0).expect("no question reads");
    let queries = match echo {
        true => &request.queries,
        false => &none,
    };
    let mut answers = reply.answers;
    // The bottle must get an answer it can parse: one that does not decode
    // (a record hickory encodes but will not read back) could crash or
    // confuse the bottle's resolver, and a fuzzer found one. Fail closed.
    if let Err(error) = decodes(queries, edns.as_ref(), metadata, &answers) {
        tracing::error!(%error, "the answer would not decode; answering SERVFAIL");
        metadata.response_code = ResponseCode::ServFail;
        answers.clear();
    }
    let builder = MessageResponseBuilder::new(queries, edns.as_ref());
    let response = builder.build(
        metadata,
        answers.iter(),
        iter::empty(),
        iter::empty(),
        iter::empty(),
    );
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, "cannot send the answer to the client");
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// Encodes the answer whole, as no client size limits it, and decodes it
/// back: whatever hickory-server sends is this or a prefix of its records.
fn decodes(
    queries: &Queries,
    edns: Option<&Edns>,
    metadata: Metadata,
    answers: &[Record],
) -> Result<(), String> {
    let response = MessageResponseBuilder::new(queries, edns).build(
        metadata,
        answers.iter(),
        iter::empty(),
        iter::empty(),
        iter::empty(),
    );
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    response
        .destructive_emit(&mut encoder)
        .map_err(|e| format!("does not encode: {e}"))?;
    Message::from_vec(&bytes).map_err(|e| format!("does not decode: {e}"))?;
    Ok(())
}

/// An OPT record when the client sent one, announcing the client's own size.
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|_| {
        let mut edns = Edns::new();
        edns.set_max_payload(request.max_payload());
        edns
    })
}

/// The names an answer's records are for and lead to (owners and CNAME
/// targets), normalised.
fn chain_names(answers: &[Record]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in answers {
        let owner = crate::profile::normalize(&r.name.to_ascii());
        let target = match &r.data {
            hickory_proto::rr::RData::CNAME(c) => Some(crate::profile::normalize(&c.0.to_ascii())),
            _ => None,
        };
        for n in std::iter::once(owner).chain(target) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::{a, name};
    use hickory_proto::rr::{RData, RecordType};

    #[test]
    fn an_answer_that_would_not_decode_is_caught_before_it_is_sent() {
        let none = Queries::read(&mut BinDecoder::new(&[]), 0).unwrap();
        let metadata = Metadata::response_from_request(&Message::query().metadata);
        let good = [a("a.test", "192.0.2.1", 60)];
        assert_eq!(decodes(&none, None, metadata, &good), Ok(()));
        // No data: only an UPDATE message may carry such a record.
        let empty = Record::from_rdata(name("a.test"), 60, RData::Update0(RecordType::HTTPS));
        assert!(decodes(&none, None, metadata, &[empty]).is_err());
    }
}
