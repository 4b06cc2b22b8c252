//! Interfaces and routes over rtnetlink (`rtnl`): find the enclave
//! interface (the one with an address in the enclave subnet) and the uplink
//! (the other one with a default route), and make sure the sentry's own
//! default route is the uplink's. Once the filter is in force: forwarding
//! on, and the bottle's gateway address (`sentry_ip`) on the enclave
//! interface.
//!
//! Podman gives the sentry the enclave's default route too (via itself).
//! The launcher creates it with a higher metric than the uplink's, so it
//! never wins and stays where netavark put it (netavark's teardown fails on
//! a route that vanished). Only an enclave default route that would win or
//! tie is deleted.

mod rtnl;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::Ipv4Net;

use rtnl::Rtnl;

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

/// One rtnetlink socket for the agent's start: [`Links::setup`] first,
/// then, once the filter is in force, [`Links::enable_forwarding`] and
/// [`Links::hold_gateway`]. Dropping it closes the socket.
pub struct Links {
    rtnl: Rtnl,
}

impl Links {
    /// Opens the socket.
    pub fn open() -> Result<Links, LinksError> {
        Ok(Links {
            rtnl: Rtnl::open().map_err(nl)?,
        })
    }

    /// Finds the interfaces and removes the enclave default routes.
    pub fn setup(&mut self, subnet: Ipv4Net) -> Result<LinkReport, LinksError> {
        let rtnl = &mut self.rtnl;
        let names = link_names(rtnl)?;
        let enclave_index = index_in_subnet(rtnl, subnet)?.ok_or(LinksError::NoEnclave(subnet))?;
        let enclave = names.get(&enclave_index).cloned().unwrap_or_default();
        let mut routes = default_routes(rtnl, false)?;
        routes.extend(default_routes(rtnl, true)?);
        let summary: Vec<DefaultRoute> = routes.iter().map(|(r, _)| r.clone()).collect();
        let Plan {
            delete,
            keep,
            uplink,
        } = plan(enclave_index, &summary);
        for &i in &delete {
            let (route, msg) = &routes[i];
            tracing::warn!(dev = %enclave, gateway = ?route.gateway, metric = route.metric, "the enclave's default route would beat the uplink's: deleting it");
            rtnl.request(rtnl::RTM_DELROUTE, 0, msg).map_err(nl)?;
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
    pub fn hold_gateway(
        &mut self,
        report: &LinkReport,
        sentry_ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), LinksError> {
        let msg = rtnl::new_address_v4(report.indices[0], sentry_ip, prefix);
        match self
            .rtnl
            .request(rtnl::RTM_NEWADDR, rtnl::CREATE_EXCL, &msg)
        {
            Ok(()) => Ok(()),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
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
    pub fn enable_forwarding(&mut self, report: &LinkReport) -> Result<(), LinksError> {
        for index in report.indices {
            let msg = rtnl::set_inet_conf(index, &forwarding_on());
            self.rtnl
                .request(rtnl::RTM_SETLINK, rtnl::CREATE_EXCL, &msg)
                .map_err(|e| LinksError::Forwarding(e.to_string()))?;
        }
        let conf = Path::new("/proc/sys/net/ipv4/conf");
        for name in [&report.interfaces.enclave, &report.interfaces.uplink] {
            check_forwarding(&conf.join(name).join("forwarding"))?;
        }
        Ok(())
    }
}

fn link_names(rtnl: &mut Rtnl) -> Result<HashMap<u32, String>, LinksError> {
    let links = rtnl
        .dump(rtnl::RTM_GETLINK, &rtnl::links_request())
        .map_err(nl)?;
    Ok(links.iter().filter_map(|m| rtnl::link_name(m)).collect())
}

fn index_in_subnet(rtnl: &mut Rtnl, subnet: Ipv4Net) -> Result<Option<u32>, LinksError> {
    let addrs = rtnl
        .dump(rtnl::RTM_GETADDR, &rtnl::addresses_request())
        .map_err(nl)?;
    Ok(addrs
        .iter()
        .filter_map(|m| rtnl::address_v4s(m))
        .find(|(_, ips)| ips.iter().any(|ip| subnet.contains(ip)))
        .map(|(index, _)| index))
}

/// The default routes of the main table of one family (IPv4 or IPv6)
/// that leave through an interface, each with its message (to delete it).
fn default_routes(rtnl: &mut Rtnl, v6: bool) -> Result<Vec<(DefaultRoute, Vec<u8>)>, LinksError> {
    let msgs = rtnl
        .dump(rtnl::RTM_GETROUTE, &rtnl::routes_request(v6))
        .map_err(nl)?;
    let mut out = Vec::new();
    for msg in msgs {
        let Some(r) = rtnl::route(&msg) else {
            continue;
        };
        if r.dst_len != 0 || r.table != rtnl::RT_TABLE_MAIN {
            continue;
        }
        if let Some(oif) = r.oif {
            let route = DefaultRoute {
                oif,
                gateway: r.gateway,
                v6: r.v6,
                metric: r.metric,
            };
            out.push((route, msg));
        }
    }
    Ok(out)
}

/// `IPV4_DEVCONF_FORWARDING` (include/uapi/linux/ip.h), an attribute of
/// `IFLA_INET_CONF` in `IFLA_AF_SPEC`/`AF_INET`.
const IPV4_DEVCONF_FORWARDING: u16 = 1;

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
