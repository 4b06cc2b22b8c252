//! Interfaces and routes over rtnetlink: find the enclave interface (the one
//! with an address in the enclave subnet) and the uplink (the other one
//! with a default route), and make sure the sentry's own default route is
//! the uplink's. Once the filter is in force: forwarding on, and the
//! bottle's gateway address (`sentry_ip`) on the enclave interface.
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
use rtnetlink::packet_core::{DefaultNla, NLA_F_NESTED};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{AfSpecInet, AfSpecUnspec, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

use ipnet::Ipv4Net;

use crate::firewall::ruleset::Interfaces;

#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    #[error("rtnetlink: {0}")]
    Netlink(String),
    #[error("no interface has an address in enclave.subnet {0}; attach the sentry to the enclave network")]
    NoEnclave(Ipv4Net),
    #[error("no default route leaves through an interface other than the enclave ({0}); attach the sentry to an uplink network")]
    NoUplink(String),
    #[error("cannot put the bottle's gateway address {0} on the enclave interface: {1}")]
    Gateway(Ipv4Addr, String),
    #[error("cannot turn IPv4 forwarding on for the enclave and the uplink ({0}); the sentry needs NET_ADMIN")]
    Forwarding(String),
}

fn nl<E: std::fmt::Display>(e: E) -> LinksError {
    LinksError::Netlink(e.to_string())
}

/// What `setup` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    pub interfaces: Interfaces,
    /// Interface indices: enclave, uplink.
    pub indices: [u32; 2],
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

/// One rtnetlink connection for the agent's start: [`Links::setup`] first,
/// then, once the filter is in force, [`Links::enable_forwarding`] and
/// [`Links::hold_gateway`]. Dropping it closes the connection.
pub struct Links {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Links {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Links {
    /// Opens the connection (inside a tokio runtime).
    pub fn open() -> Result<Links, LinksError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(nl)?;
        Ok(Links {
            handle,
            task: tokio::spawn(conn),
        })
    }

    /// Finds the interfaces and removes the enclave default routes.
    pub async fn setup(&self, subnet: Ipv4Net) -> Result<LinkReport, LinksError> {
        let handle = &self.handle;
        let names = link_names(handle).await?;
        let enclave_index = index_in_subnet(handle, subnet)
            .await?
            .ok_or(LinksError::NoEnclave(subnet))?;
        let enclave = names.get(&enclave_index).cloned().unwrap_or_default();
        let mut routes =
            default_routes(handle, RouteMessageBuilder::<Ipv4Addr>::new().build()).await?;
        routes
            .extend(default_routes(handle, RouteMessageBuilder::<Ipv6Addr>::new().build()).await?);
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
        Ok(LinkReport {
            interfaces: Interfaces { enclave, uplink },
            indices: [enclave_index, uplink_index],
            uplink_gateways,
            removed_routes: delete.len(),
            kept_routes: keep.len(),
        })
    }

    /// Puts `sentry_ip` (the bottle's gateway and resolver) on the enclave
    /// interface, if it is not there yet (a restarted worker, or a sentry
    /// given that address by hand). Podman gives the sentry another address
    /// (`Enclave::sentry_link_ip`), so until this runs the bottle's packets
    /// find no gateway: nothing reaches the sentry before its filter holds.
    pub async fn hold_gateway(
        &self,
        report: &LinkReport,
        sentry_ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), LinksError> {
        let handle = &self.handle;
        let result = handle
            .address()
            .add(report.indices[0], IpAddr::V4(sentry_ip), prefix)
            .execute()
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(LinksError::Gateway(sentry_ip, e.to_string())),
        }
    }

    /// Turns IPv4 forwarding on for the enclave and the uplink, and nowhere
    /// else, over rtnetlink, then reads it back. IPv4 forwards what arrives on
    /// an interface whose own `forwarding` is on, so this is the switch. The
    /// launcher starts the sentry with forwarding off (a new network namespace
    /// inherits the host's `ip_forward`, which Podman turns on), and the agent
    /// calls this once its first full ruleset is in force: a sentry that starts
    /// or restarts while its bottle runs forwards nothing before its filter
    /// holds. A restarted worker finds it on already; the ruleset stayed too.
    pub async fn enable_forwarding(&self, report: &LinkReport) -> Result<(), LinksError> {
        let handle = &self.handle;
        for index in report.indices {
            let mut msg = LinkMessage::default();
            msg.header.index = index;
            msg.attributes
                .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
                    AfSpecInet::Other(DefaultNla::new(
                        IFLA_INET_CONF | NLA_F_NESTED,
                        forwarding_on(),
                    )),
                ])]));
            handle
                .link()
                .set(msg)
                .execute()
                .await
                .map_err(|e| LinksError::Forwarding(e.to_string()))?;
        }
        let conf = Path::new("/proc/sys/net/ipv4/conf");
        for name in [&report.interfaces.enclave, &report.interfaces.uplink] {
            check_forwarding(&conf.join(name).join("forwarding"))?;
        }
        Ok(())
    }
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

/// The first interface with an address in `subnet`. The dump is read to
/// its end: a dump left unread makes netlink-proto warn, once for every
/// message it could not hand over, in every sentry's log.
async fn index_in_subnet(handle: &Handle, subnet: Ipv4Net) -> Result<Option<u32>, LinksError> {
    let mut addrs = handle.address().get().execute();
    let mut found = None;
    while let Some(msg) = addrs.try_next().await.map_err(nl)? {
        let inside = msg.attributes.iter().any(|a| {
            matches!(a, AddressAttribute::Address(IpAddr::V4(x)) | AddressAttribute::Local(IpAddr::V4(x)) if subnet.contains(x))
        });
        if inside && found.is_none() {
            found = Some(msg.header.index);
        }
    }
    Ok(found)
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

/// `IPV4_DEVCONF_FORWARDING` (include/uapi/linux/ip.h), an attribute of
/// `IFLA_INET_CONF` in `IFLA_AF_SPEC`/`AF_INET`.
const IPV4_DEVCONF_FORWARDING: u16 = 1;
const IFLA_INET_CONF: u16 = 1;

/// The nested attribute `IPV4_DEVCONF_FORWARDING = 1`, alone: the other
/// settings of the interface stay as they are.
fn forwarding_on() -> Vec<u8> {
    let mut attr = Vec::with_capacity(8);
    attr.extend_from_slice(&8u16.to_ne_bytes());
    attr.extend_from_slice(&IPV4_DEVCONF_FORWARDING.to_ne_bytes());
    attr.extend_from_slice(&1u32.to_ne_bytes());
    attr
}

fn check_forwarding(path: &Path) -> Result<(), LinksError> {
    let value = std::fs::read_to_string(path)
        .map_err(|e| LinksError::Forwarding(format!("cannot read {}: {e}", path.display())))?;
    if value.trim() == "1" {
        Ok(())
    } else {
        Err(LinksError::Forwarding(format!(
            "{} is still {}",
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
    fn forwarding_is_read_back_after_it_was_turned_on() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("forwarding");
        std::fs::write(&f, "0\n").unwrap();
        let err = check_forwarding(&f).unwrap_err().to_string();
        assert!(err.contains("is still 0"), "{err}");
        std::fs::write(&f, "1\n").unwrap();
        assert!(check_forwarding(&f).is_ok());
    }

    #[test]
    fn the_forwarding_attribute_is_one_u32_set_to_1() {
        assert_eq!(forwarding_on(), [8, 0, 1, 0, 1, 0, 0, 0]);
    }
}
