//! What `up` and `stop` ask podman before they change anything. The
//! questions do not depend on each other, so they are asked at once: every
//! podman call is a process start, about a quarter of a second on rootless
//! Podman 5.8, and asking one after the other was half of `up`'s time.

use std::process::Output;
use std::thread::{self, ScopedJoinHandle};

use ipnet::IpNet;
use rbm_profile::{Names, Profile};

use crate::error::Error;
use crate::hostnets;
use crate::images::{AGENT_STAMP_LABEL, SENTRY_IMAGE};
use crate::podman::args::{self, Kind, Removal};
use crate::podman::host::Host;
use crate::podman::Podman;

/// Which containers, networks and secrets exist, one listing of each kind.
/// A kind whose listing failed is unknown: anything of it may exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Present {
    containers: Option<Vec<String>>,
    networks: Option<Vec<String>>,
    secrets: Option<Vec<String>>,
    /// Every network's subnets and gateways (`hostnets`), from the same
    /// listing; none if it failed.
    pub host_nets: Vec<IpNet>,
}

impl Present {
    /// Lists the three kinds at once.
    pub fn ask(podman: &Podman) -> Present {
        let (containers, (networks, secrets)) = at_once(
            || list(podman, Kind::Container),
            || {
                at_once(
                    || list(podman, Kind::Network),
                    || list(podman, Kind::Secret),
                )
            },
        );
        let host_nets = networks.as_deref().map_or(vec![], hostnets::from_networks);
        Present {
            containers: containers.as_deref().map(names),
            networks: networks.as_deref().map(names),
            secrets: secrets.as_deref().map(names),
            host_nets,
        }
    }

    fn of(&self, kind: Kind) -> Option<&[String]> {
        match kind {
            Kind::Container => self.containers.as_deref(),
            Kind::Network => self.networks.as_deref(),
            Kind::Secret => self.secrets.as_deref(),
        }
    }

    /// Whether the networks were listed (and so `host_nets` gathered).
    pub fn networks_known(&self) -> bool {
        self.networks.is_some()
    }

    /// Whether `removal`'s object may exist: it was listed, or its kind
    /// could not be listed.
    pub fn may_hold(&self, removal: &Removal) -> bool {
        self.of(removal.kind)
            .is_none_or(|names| names.contains(&removal.name))
    }

    /// The Podman secrets rbm made for the profile (a credential's value,
    /// the CA files); not a secret the profile named as its source. Empty
    /// if secrets could not be listed (then `stop` removes none).
    pub fn our_secrets(&self, names: &Names) -> Vec<String> {
        let prefix = crate::creds::secret_prefix(names);
        self.of(Kind::Secret)
            .unwrap_or_default()
            .iter()
            .filter(|s| {
                s.strip_prefix(&prefix).is_some_and(|rest| {
                    rest.starts_with("cred-") || rest == "ca" || rest == "ca-bundle"
                })
            })
            .cloned()
            .collect()
    }
}

/// What `podman KIND ls` prints; None if it failed.
fn list(podman: &Podman, kind: Kind) -> Option<String> {
    podman.run(&kind.list()).ok()
}

/// The names in a listing: the first word of each line.
fn names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The images `up` needs: whether the bottle's exists, and which agent
/// the sentry image holds.
#[derive(Debug)]
pub struct Images {
    /// `podman image exists BOTTLE`, as it ran.
    pub bottle: Result<Output, Error>,
    /// The sentry image's agent stamp label; None if there is no such image.
    pub sentry_label: Option<String>,
}

impl Images {
    /// Asks both at once.
    pub fn ask(podman: &Podman, profile: &Profile) -> Images {
        let (bottle, sentry_label) = at_once(
            || podman.output(&args::image_exists(&profile.bottle.image)),
            || {
                podman
                    .run(&args::image_label(SENTRY_IMAGE, AGENT_STAMP_LABEL))
                    .ok()
            },
        );
        Images {
            bottle,
            sentry_label,
        }
    }
}

/// Everything `up` asks before it changes anything.
#[derive(Debug)]
pub struct Survey {
    pub images: Images,
    pub present: Present,
}

impl Survey {
    /// Asks of the images and what exists at once.
    pub fn ask(podman: &Podman, profile: &Profile) -> Survey {
        let (images, present) = at_once(|| Images::ask(podman, profile), || Present::ask(podman));
        Survey { images, present }
    }

    /// Asks what podman runs (`podman info`) while it asks the survey.
    /// The host comes first in the result: if podman cannot say what it
    /// is, that is the error to report.
    pub fn ask_with_host(podman: &Podman, profile: &Profile) -> (Result<Host, Error>, Survey) {
        let (survey, host) = at_once(|| Survey::ask(podman, profile), || Host::detect(podman));
        (host, survey)
    }
}

/// Asks podman what it is while it lists what exists (for `stop`).
pub fn host_and_present(podman: &Podman) -> (Result<Host, Error>, Present) {
    let (present, host) = at_once(|| Present::ask(podman), || Host::detect(podman));
    (host, present)
}

/// Runs `a` on a scoped thread while `b` runs here; both results. A
/// panic in either goes on in this thread once both have finished.
pub(super) fn at_once<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    thread::scope(|s| {
        let a = s.spawn(a);
        let b = b();
        (join(a), b)
    })
}

/// A scoped thread's result; its panic goes on in this thread.
pub(super) fn join<T>(handle: ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
