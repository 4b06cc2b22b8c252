//! Interfaces and routes over rtnetlink: find the enclave interface (the one
//! holding sentry_ip) and the uplink (the other one with a default route),
//! and make sure the sentry's own default route is the uplink's.
//!
//! Podman gives the sentry the enclave's default route too (via itself).
//! The launcher creates it with a higher metric than the uplink's, so it
//! never wins and stays where netavark put it (netavark's teardown fails on
//! a route that vanished). Only an enclave default route that would win or
//! tie is deleted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::firewall::ruleset::Interfaces;

#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    #[error("rtnetlink: {0}")]
    Netlink(String),
    #[error("no interface holds enclave.sentry_ip {0}; attach the sentry to the enclave network with ip={0}")]
    NoEnclave(Ipv4Addr),
    #[error("no default route leaves through an interface other than the enclave ({0}); attach the sentry to an uplink network")]
    NoUplink(String),
    #[error("IPv4 forwarding is off in the sentry ({0}); start the sentry with --sysctl net.ipv4.ip_forward=1")]
    ForwardingOff(String),
}

fn nl<E: std::fmt::Display>(e: E) -> LinksError {
    LinksError::Netlink(e.to_string())
}

/// What `setup` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    pub interfaces: Interfaces,
    /// Gateways of the uplink's default routes: the machine the sentry runs
    /// on, which no DNS answer may open.
    pub uplink_gateways: Vec<IpAddr>,
    /// Default routes deleted from the enclave interface (they would have
    /// beaten the uplink's).
    pub removed_routes: usize,
    /// Enclave default routes left in place (the uplink's beat them).
    pub kept_routes: usize,
}

/// A default route, reduced to what the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    pub oif: u32,
    pub gateway: Option<IpAddr>,
    pub v6: bool,
    /// The route's metric (priority); the lowest wins.
    pub metric: u32,
}

/// What to do with the default routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indexes of enclave default routes that would win or tie: delete them.
    pub delete: Vec<usize>,
    /// Indexes of enclave default routes that the uplink's beat: leave them.
    pub keep: Vec<usize>,
    /// The uplink: the interface of the best default route that does not
    /// leave through the enclave (IPv4 first).
    pub uplink: Option<u32>,
}

/// Pure decision: which enclave default routes must go, and which
/// interface is the uplink.
pub fn plan(enclave_index: u32, defaults: &[DefaultRoute]) -> Plan {
    let outside = |v6: bool| {
        defaults
            .iter()
            .filter(move |r| r.oif != enclave_index && r.v6 == v6)
    };
    let best = |v6: bool| outside(v6).min_by_key(|r| r.metric);
    let (mut delete, mut keep) = (Vec::new(), Vec::new());
    for (i, r) in defaults.iter().enumerate() {
        if r.oif != enclave_index {
            continue;
        }
        match best(r.v6) {
            Some(up) if up.metric < r.metric => keep.push(i),
            _ => delete.push(i),
        }
    }
    let uplink = best(false).or_else(|| best(true)).map(|r| r.oif);
    Plan {
        delete,
        keep,
        uplink,
    }
}

/// Finds the interfaces, removes the enclave default routes, checks forwarding.
pub async fn setup(sentry_ip: Ipv4Addr) -> Result<LinkReport, LinksError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(nl)?;
    let task = tokio::spawn(conn);
    let result = setup_with(&handle, sentry_ip).await;
    task.abort();
    result
}

async fn setup_with(handle: &Handle, sentry_ip: Ipv4Addr) -> Result<LinkReport, LinksError> {
    let names = link_names(handle).await?;
    let enclave_index = index_of_address(handle, IpAddr::V4(sentry_ip))
        .await?
        .ok_or(LinksError::NoEnclave(sentry_ip))?;
    let enclave = names.get(&enclave_index).cloned().unwrap_or_default();
    let mut routes = default_routes(handle, RouteMessageBuilder::<Ipv4Addr>::new().build()).await?;
    routes.extend(default_routes(handle, RouteMessageBuilder::<Ipv6Addr>::new().build()).await?);
    let summary: Vec<DefaultRoute> = routes.iter().map(|(r, _)| r.clone()).collect();
    let Plan {
        delete,
        keep,
        uplink,
    } = plan(enclave_index, &summary);
    for &i in &delete {
        let (route, msg) = &routes[i];
        tracing::warn!(dev = %enclave, gateway = ?route.gateway, metric = route.metric, "the enclave's default route would beat the uplink's: deleting it");
        handle
            .route()
            .del(msg.clone())
            .execute()
            .await
            .map_err(nl)?;
    }
    let uplink_index = uplink.ok_or_else(|| LinksError::NoUplink(enclave.clone()))?;
    let uplink = names.get(&uplink_index).cloned().unwrap_or_default();
    let uplink_gateways = summary
        .iter()
        .filter(|r| r.oif == uplink_index)
        .filter_map(|r| r.gateway)
        .collect();
    check_forwarding(Path::new("/proc/sys/net/ipv4/ip_forward"))?;
    Ok(LinkReport {
        interfaces: Interfaces { enclave, uplink },
        uplink_gateways,
        removed_routes: delete.len(),
        kept_routes: keep.len(),
    })
}

async fn link_names(handle: &Handle) -> Result<HashMap<u32, String>, LinksError> {
    let mut links = handle.link().get().execute();
    let mut out = HashMap::new();
    while let Some(link) = links.try_next().await.map_err(nl)? {
        for a in &link.attributes {
            if let LinkAttribute::IfName(name) = a {
                out.insert(link.header.index, name.clone());
            }
        }
    }
    Ok(out)
}

async fn index_of_address(handle: &Handle, ip: IpAddr) -> Result<Option<u32>, LinksError> {
    let mut addrs = handle.address().get().execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl)? {
        let holds = msg.attributes.iter().any(
            |a| matches!(a, AddressAttribute::Address(x) | AddressAttribute::Local(x) if *x == ip),
        );
        if holds {
            return Ok(Some(msg.header.index));
        }
    }
    Ok(None)
}

async fn default_routes(
    handle: &Handle,
    filter: RouteMessage,
) -> Result<Vec<(DefaultRoute, RouteMessage)>, LinksError> {
    let mut routes = handle.route().get(filter).execute();
    let mut out = Vec::new();
    while let Some(msg) = routes.try_next().await.map_err(nl)? {
        if msg.header.destination_prefix_length != 0 || msg.header.table != 254 {
            continue;
        }
        let oif = msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        let gateway = msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(rtnetlink::packet_route::route::RouteAddress::Inet(g)) => {
                Some(IpAddr::V4(*g))
            }
            RouteAttribute::Gateway(rtnetlink::packet_route::route::RouteAddress::Inet6(g)) => {
                Some(IpAddr::V6(*g))
            }
            _ => None,
        });
        let metric = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Priority(m) => Some(*m),
                _ => None,
            })
            .unwrap_or(0);
        let v6 = msg.header.address_family == AddressFamily::Inet6;
        if let Some(oif) = oif {
            out.push((
                DefaultRoute {
                    oif,
                    gateway,
                    v6,
                    metric,
                },
                msg,
            ));
        }
    }
    Ok(out)
}

fn check_forwarding(path: &Path) -> Result<(), LinksError> {
    let value = std::fs::read_to_string(path)
        .map_err(|e| LinksError::ForwardingOff(format!("cannot read {}: {e}", path.display())))?;
    if value.trim() == "1" {
        Ok(())
    } else {
        Err(LinksError::ForwardingOff(format!(
            "{} is {}",
            path.display(),
            value.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(oif: u32, metric: u32) -> DefaultRoute {
        DefaultRoute {
            oif,
            gateway: None,
            v6: false,
            metric,
        }
    }

    fn p(delete: &[usize], keep: &[usize], uplink: Option<u32>) -> Plan {
        Plan {
            delete: delete.to_vec(),
            keep: keep.to_vec(),
            uplink,
        }
    }

    #[test]
    fn an_enclave_default_that_loses_to_the_uplink_stays() {
        assert_eq!(plan(3, &[r(2, 100), r(3, 1000)]), p(&[], &[1], Some(2)));
    }

    #[test]
    fn an_enclave_default_that_would_win_or_tie_is_deleted() {
        assert_eq!(plan(3, &[r(2, 100), r(3, 100)]), p(&[1], &[], Some(2)));
        assert_eq!(plan(3, &[r(3, 50), r(2, 100)]), p(&[0], &[], Some(2)));
        assert_eq!(plan(3, &[r(3, 1000)]), p(&[0], &[], None));
        assert_eq!(plan(3, &[r(2, 100)]), p(&[], &[], Some(2)));
    }

    #[test]
    fn families_are_compared_apart_and_the_best_uplink_is_taken() {
        let v6 = DefaultRoute {
            v6: true,
            ..r(3, 1000)
        };
        assert_eq!(plan(3, &[r(2, 100), v6]), p(&[1], &[], Some(2)));
        assert_eq!(
            plan(3, &[r(4, 600), r(2, 100), r(3, 500)]),
            p(&[], &[2], Some(2))
        );
    }

    #[test]
    fn forwarding_check_reads_the_sysctl() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ip_forward");
        std::fs::write(&f, "0\n").unwrap();
        let err = check_forwarding(&f).unwrap_err().to_string();
        assert!(err.contains("--sysctl net.ipv4.ip_forward=1"), "{err}");
        std::fs::write(&f, "1\n").unwrap();
        assert!(check_forwarding(&f).is_ok());
    }
}
