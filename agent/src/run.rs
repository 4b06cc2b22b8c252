//! The agent's life: lock down, discover, install the filter, serve DNS and
//! status, then say ready. Any error before ready ends the agent with the
//! lockdown (or the full filter) left in force: fail closed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ipnet::{IpNet, Ipv4Net};

use crate::carried::{Carried, BEFORE_RESTART};
use crate::creds::{self, ca, proxy::Proxy};
use crate::denylog::{self, nflog::NfLog, watch};
use crate::dns::{self, DnsConfig};
use crate::firewall::netlink::NetlinkTransport;
use crate::firewall::ruleset::marks;
use crate::firewall::ruleset::Ruleset;
use crate::firewall::Firewall;
use crate::inuse;
use crate::links::Links;
use crate::names::{self, queue::NfQueue};
use crate::policy::{self, PolicyCell};
use crate::profile::Mode;
use crate::profile::Profile;
use crate::reload::{self, Enforcer};
use crate::state::Shared;
use crate::status::{self, StatusSource};

pub struct RunOptions {
    /// The profile's TOML text and where it came from (for messages).
    pub profile_text: String,
    pub profile_origin: PathBuf,
    pub control: PathBuf,
    pub resolv_conf: PathBuf,
    /// Where the credentials' real values are (`creds::SECRETS_DIR`).
    pub secrets: PathBuf,
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    // A reload's policy, if one was made before this agent (re)started,
    // wins over the profile the sentry was created with.
    let state_file = reload::state_path(&opts.control);
    let persisted = reload::load_state(&state_file)?;
    let profile = match &persisted {
        Some(p) => Profile::parse(&p.profile, &state_file)?,
        None => Profile::parse(&opts.profile_text, &opts.profile_origin)?,
    };
    let mut firewall = Firewall::new(Box::new(NetlinkTransport::open()?));
    // What an agent before this one learned, read before the lockdown
    // replaces its table (the supervisor restarts us in its namespace).
    let carried = if persisted.as_ref().is_some_and(|p| p.installing) {
        // The agent before died inside a reload: its table may hold what
        // the policy before opened (a name the reload removed).
        tracing::warn!("the agent before died inside a reload: nothing it learned is carried over");
        Carried::default()
    } else {
        Carried::read(&mut firewall).unwrap_or_else(|e| {
            tracing::warn!("cannot read what the agent before learned, so it is closed: {e}");
            Carried::default()
        })
    };
    let read_at = Instant::now();
    firewall
        .install(&Ruleset::lockdown())
        .context("installing the lockdown ruleset")?;
    tracing::info!("lockdown in force: nothing is forwarded");
    match firewall.detect_refresh() {
        Ok(refresh) => tracing::info!(?refresh, "how this kernel refreshes a learned address"),
        Err(e) => tracing::warn!("cannot try how this kernel refreshes a timeout, so learning adds, deletes and adds: {e}"),
    }
    let credentials = creds::load(
        &profile,
        std::env::var(creds::ENV).ok().as_deref(),
        &opts.secrets,
    )?;
    let extra_cas = creds::upstream_cas(std::env::var(creds::UPSTREAM_CAS_ENV).ok().as_deref())?;
    // What the launcher saw of the Podman host; a value it cannot read is
    // a broken launcher, and guessing would leave the host open: stop.
    let host_nets = match std::env::var(policy::HOST_ENV) {
        Ok(text) => policy::parse_host_nets(&text).map_err(anyhow::Error::msg)?,
        Err(_) => vec![],
    };

    let upstreams = upstreams(&profile, &opts)?;
    let mut links = Links::open()?;
    let report = links.setup(profile.enclave.subnet)?;
    let moniker = profile.moniker.clone();
    let interfaces = report.interfaces.clone();
    tracing::info!(enclave = %interfaces.enclave, uplink = %interfaces.uplink, gateways = ?report.uplink_gateways, removed_routes = report.removed_routes, kept_routes = report.kept_routes, "interfaces");
    tracing::info!(
        ?host_nets,
        "the Podman host's addresses and networks, withheld from answers"
    );
    let mut host: Vec<IpNet> = report
        .uplink_gateways
        .iter()
        .map(|gw| IpNet::from(*gw))
        .collect();
    host.extend(host_nets);
    let placeholders: Vec<(String, Vec<u8>)> = credentials
        .iter()
        .map(|c| (c.secret.env.clone(), c.secret.placeholder.clone()))
        .collect();
    let policy = reload::sentry_policy(&profile, &host, &placeholders);
    let binds_names = policy.binds_names();
    let cell = Arc::new(PolicyCell::new(policy));
    let shared = Arc::new(Shared::default());

    // The name check is bound before the ruleset that queues to it: a held
    // packet always has a reader (the kernel drops what it cannot queue:
    // fail closed).
    let start_name_check = {
        let (cell, shared) = (cell.clone(), shared.clone());
        move || -> anyhow::Result<()> {
            let queue = NfQueue::open().context("binding the name-check queue")?;
            names::service::start(Box::new(queue), cell.clone(), shared.clone())
                .context("starting the name check")?;
            tracing::info!("name binding in force: TLS, HTTP and QUIC names are checked");
            Ok(())
        }
    };
    if binds_names {
        start_name_check()?;
    }
    let deny_log = NfLog::open().context("binding the deny log")?;
    let firewall = Arc::new(Mutex::new(firewall));
    let enforcer = Arc::new(Enforcer::new(
        firewall.clone(),
        cell.clone(),
        shared.clone(),
        upstreams.clone(),
        interfaces.clone(),
        host,
        placeholders,
        profile,
        persisted,
        state_file,
        binds_names,
        Box::new(start_name_check),
    ));
    let policy = cell.get();
    let (generation, reloads) = shared.generation();
    let mut ruleset = enforcer.ruleset(&policy, generation);
    ruleset.fill(carried.elements(read_at.elapsed()));
    firewall
        .lock()
        .unwrap()
        .install(&ruleset)
        .with_context(|| {
            if binds_names {
                "installing the rbm ruleset (name binding needs the kernel's nft_compat with xtables' NFQUEUE target; without them, set uplink.name_binding = false)"
            } else {
                "installing the rbm ruleset"
            }
        })?;
    tracing::info!(
        access = policy.access.as_str(),
        generation,
        reloads,
        "filter in force"
    );
    if !policy.requests.is_empty() {
        // Which host answered them is not carried: any of them may be a
        // ruled host's, whose address the proxy never splices to.
        shared.mark_ruled(carried.intercepted());
    }
    if !carried.is_empty() {
        let learns = carried.learns();
        shared.record_learned(BEFORE_RESTART, &learns, read_at);
        tracing::info!(
            addresses = learns.len(),
            "carried over what the agent before learned"
        );
    }
    // Only now does the sentry forward at all (it started with forwarding off).
    links
        .enable_forwarding(&report)
        .context("turning forwarding on")?;
    tracing::info!(enclave = %interfaces.enclave, uplink = %interfaces.uplink, "forwarding on");
    // And only now can the bottle reach the sentry at all: its gateway.
    let enclave = cell.get().enclave;
    links
        .hold_gateway(&report, enclave.sentry_ip, enclave.subnet.prefix_len())
        .context("putting the bottle's gateway address on the enclave interface")?;
    drop(links);
    // The credential proxy listens as soon as the bottle can reach the
    // sentry (before, a redirected connection is reset: fail closed).
    let _proxy = if cell.get().intercept_hosts.is_empty() {
        None
    } else {
        let (cert, key) = ca::paths(&opts.control);
        let hosts = cell.get().intercept_hosts.clone();
        let authority = ca::Authority::load_or_create(&cert, &key, &moniker, &hosts)
            .context("making the credential CA")?;
        let count = credentials.len();
        let proxy = Proxy::new(
            credentials,
            &extra_cas,
            Arc::new(authority),
            cell.clone(),
            shared.clone(),
            marks::UPSTREAM,
        )?;
        // Every address: the kernel's redirect sends to the enclave
        // interface's primary address, which is Podman's (sentry_link_ip),
        // not sentry_ip. Only connections the redirect made get in (input
        // accepts the port from the enclave with `ct status dnat` only).
        let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), creds::PROXY_PORT);
        let handle = Arc::new(proxy)
            .serve(listen)
            .await
            .with_context(|| format!("binding the credential proxy on {listen}"))?;
        tracing::info!(credentials = count, hosts = ?hosts, "proxy in force for the credential hosts and the hosts with request rules");
        Some(handle)
    };

    denylog::start(deny_log, cell.clone(), shared.clone()).context("starting the deny log")?;
    let config = DnsConfig {
        listen: SocketAddr::new(IpAddr::V4(policy.enclave.sentry_ip), 53),
        upstreams: upstreams
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect(),
        upstream_timeout: Duration::from_secs(2),
    };
    let _dns = dns::serve(config, cell.clone(), enforcer.clone(), shared.clone())
        .await
        .context("starting the DNS proxy")?;
    let keeper = inuse::Keeper::new(firewall.clone(), enforcer.batcher.clone(), shared.clone());
    let _inuse = inuse::start(keeper);

    let restarts = std::env::var(crate::supervise::RESTARTS_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if restarts > 0 {
        tracing::warn!(restarts, "the agent was restarted after it died");
    }
    let source = Arc::new(StatusSource {
        restarts,
        shared: shared.clone(),
        policy: cell.clone(),
        firewall,
        interfaces,
        upstream_dns: upstreams,
    });
    let _control = status::serve(&opts.control, source)
        .with_context(|| format!("binding the control socket {}", opts.control.display()))?;
    let watch_path = watch::socket_path(&opts.control);
    let _watch = watch::serve(&watch_path, shared.clone())
        .with_context(|| format!("binding the watch socket {}", watch_path.display()))?;
    let reload_path = reload::socket_path(&opts.control);
    let _reload = reload::serve(&reload_path, enforcer)
        .with_context(|| format!("binding the reload socket {}", reload_path.display()))?;
    shared.set_ready(true);
    tracing::info!(dns = %policy.enclave.sentry_ip, control = %opts.control.display(), "ready");

    wait_for_stop().await;
    tracing::info!("stopping; the filter stays in force");
    for path in [&opts.control, &watch_path, &reload_path] {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The profile's resolvers, or the sentry's own resolv.conf.
fn upstreams(profile: &Profile, opts: &RunOptions) -> anyhow::Result<Vec<IpAddr>> {
    let uplink = &profile.uplink;
    if !uplink.upstream_dns.is_empty() || uplink.dns == Mode::Disabled {
        return Ok(uplink.upstream_dns.clone());
    }
    let text = std::fs::read_to_string(&opts.resolv_conf).unwrap_or_default();
    let found = resolvers(&text, profile.enclave.subnet);
    if found.is_empty() {
        bail!(
            "no upstream DNS: uplink.upstream_dns is empty and {} names no usable nameserver; set uplink.upstream_dns in the profile",
            opts.resolv_conf.display()
        );
    }
    Ok(found)
}

/// `nameserver` lines, leaving out loopback and the enclave (that is us).
pub fn resolvers(resolv_conf: &str, enclave: Ipv4Net) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback())
        .filter(|ip| !matches!(ip, IpAddr::V4(v4) if enclave.contains(v4)))
        .collect()
}

async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn resolv_conf_skips_loopback_and_enclave() {
        let text = "moniker = \"tt\"\n[bottle]\nimage = \"i\"\n[enclave]\nsubnet = \"10.242.0.0/24\"\nsentry_ip = \"10.242.0.2\"\nbottle_ip = \"10.242.0.3\"\n[uplink]\ndns = \"allowlist\"\naccess = \"allowlist\"\ndomains = [\"a.test\"]\n";
        let profile = Profile::parse(text, Path::new("t")).unwrap();
        let conf = "# comment\nsearch dns.podman\nnameserver 10.89.0.1\nnameserver 127.0.0.53\nnameserver 10.242.0.2\nnameserver fe80::1%eth0\n";
        let got = resolvers(conf, profile.enclave.subnet);
        assert_eq!(
            got,
            vec![
                "10.89.0.1".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
    }
}
