//! `rbm-probe reach`: for i in 1..=count, resolve the name (A, UDP), then at
//! once send one UDP datagram to the first address (no retry), then connect
//! TCP to it. Proves no first packet is lost right after the DNS answer.
//!
//! Report: `{"count":N,"ok":N,"failures":[{"i","name","stage":"dns"|"udp"|"tcp","error"}]}`.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde::Serialize;

use super::conn::{tcp_line, udp_line};
use super::dns::{resolve, DnsRequest};
use super::net::{describe, unspecified_for};
use super::Report;

/// What to reach: `template` with `{i}` replaced by 1..=count.
#[derive(Debug, Clone)]
pub struct ReachRequest {
    pub template: String,
    pub count: u32,
    pub port: u16,
    pub server: SocketAddr,
    pub timeout: Duration,
}

#[derive(Debug, Serialize)]
pub struct ReachReport {
    pub count: u32,
    pub ok: u32,
    pub failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    pub i: u32,
    pub name: String,
    pub stage: &'static str,
    pub error: String,
}

pub fn run(request: &ReachRequest) -> Report {
    let failures: Vec<Failure> = (1..=request.count)
        .filter_map(|i| reach_one(request, i).err())
        .collect();
    let ok = request.count - failures.len() as u32;
    let success = failures.is_empty();
    Report::new(
        &ReachReport {
            count: request.count,
            ok,
            failures,
        },
        success,
    )
}

fn reach_one(request: &ReachRequest, i: u32) -> Result<(), Failure> {
    let name = request.template.replace("{i}", &i.to_string());
    let fail = |stage, error| Failure {
        i,
        name: name.clone(),
        stage,
        error,
    };
    // Bound before the query, so the datagram leaves right after the answer.
    let udp = UdpSocket::bind(unspecified_for(&request.server))
        .map_err(|e| fail("udp", describe("bind", &e)))?;
    let dns = DnsRequest {
        name: name.clone(),
        qtype: RecordType::A,
        server: request.server,
        tcp: false,
        timeout: request.timeout,
    };
    let target = first_address(&resolve(&dns)).map_err(|e| fail("dns", e))?;
    let target = SocketAddr::new(target, request.port);
    udp_line(&udp, target, request.timeout).map_err(|e| fail("udp", e))?;
    tcp_line(target, request.timeout).map_err(|e| fail("tcp", e))?;
    Ok(())
}

fn first_address(report: &super::dns::DnsReport) -> Result<std::net::IpAddr, String> {
    if let Some(error) = &report.error {
        return Err(error.clone());
    }
    let rcode = report.rcode.as_deref().unwrap_or("none");
    let first = report
        .addrs
        .first()
        .ok_or_else(|| format!("no address: rcode {rcode}, no A record"))?;
    first.parse().map_err(|_| format!("bad address {first:?}"))
}
