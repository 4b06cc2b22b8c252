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

/// An object podman listed, and the label that says who made it: for a
/// container or network `rbm.profile` (the profile file), for a secret
/// `rbm.moniker`; empty if it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub label: String,
}

/// Which containers, networks and secrets exist, one listing of each kind.
/// A kind whose listing failed is unknown: anything of it may exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Present {
    containers: Option<Vec<Listed>>,
    networks: Option<Vec<Listed>>,
    secrets: Option<Vec<Listed>>,
    /// Every network's subnets and gateways (`hostnets`), from the same
    /// listing; none if it failed.
    pub host_nets: Vec<IpNet>,
}

/// Who made a moniker's containers and networks (the `rbm.profile` label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Nothing of the moniker exists.
    Nobody,
    /// The profile file asking.
    This,
    /// Another profile file (its label).
    Other(String),
    /// Something without the label: an rbm-launch from before labels, or
    /// made by hand.
    Unlabelled,
    /// Podman could not list containers or networks.
    Unknown,
}

impl Present {
    /// Lists the three kinds at once; then, only if secrets named like
    /// rbm's for `names` exist, which of them rbm made (their labels).
    pub fn ask(podman: &Podman, names: &Names) -> Present {
        let (containers, (networks, secrets)) = at_once(
            || list(podman, Kind::Container),
            || {
                at_once(
                    || list(podman, Kind::Network),
                    || list(podman, Kind::Secret),
                )
            },
        );
        let host_nets = networks
            .as_deref()
            .map_or(vec![], |l| hostnets::from_networks(&heads(l)));
        let secrets = secrets.map(|l| secret_labels(podman, names, &listed(&l)));
        Present {
            containers: containers.as_deref().map(listed),
            networks: networks.as_deref().map(listed),
            secrets,
            host_nets,
        }
    }

    /// What a listing of each kind said (None: it failed), for tests.
    pub fn from_listed(
        containers: Option<Vec<Listed>>,
        networks: Option<Vec<Listed>>,
        secrets: Option<Vec<Listed>>,
    ) -> Present {
        Present {
            containers,
            networks,
            secrets,
            host_nets: vec![],
        }
    }

    fn of(&self, kind: Kind) -> Option<&[Listed]> {
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
            .is_none_or(|listed| listed.iter().any(|l| l.name == removal.name))
    }

    /// Who made the containers and networks of `names`, as seen by the
    /// profile file whose label is `owner`. Another file wins over an
    /// unlabelled object, which wins over this file's own.
    pub fn owner(&self, names: &Names, owner: &str) -> Owner {
        let mut found = Owner::Nobody;
        let objects = args::containers(names)
            .into_iter()
            .chain(args::networks(names));
        for removal in objects {
            let Some(listed) = self.of(removal.kind) else {
                return Owner::Unknown;
            };
            let Some(l) = listed.iter().find(|l| l.name == removal.name) else {
                continue;
            };
            let this = if l.label.is_empty() {
                Owner::Unlabelled
            } else if l.label == owner {
                Owner::This
            } else {
                Owner::Other(l.label.clone())
            };
            found = match (found, this) {
                (f @ Owner::Other(_), _) => f,
                (_, t @ Owner::Other(_)) => t,
                (Owner::Unlabelled, _) | (_, Owner::Unlabelled) => Owner::Unlabelled,
                (_, t) => t,
            };
        }
        found
    }

    /// The Podman secrets rbm made for the profile (a credential's value,
    /// the CA files: named `rbm-M-cred-*`, `rbm-M-ca`, `rbm-M-ca-bundle` and
    /// labelled `rbm.moniker=M`); not a secret the profile named as its
    /// source, nor one a user made under such a name. Empty if secrets
    /// could not be listed (then `stop` removes none).
    pub fn our_secrets(&self, names: &Names) -> Vec<String> {
        self.named_like_ours(names)
            .filter(|l| l.label == names_moniker(names))
            .map(|l| l.name.clone())
            .collect()
    }

    /// Secrets named like rbm's for the profile that rbm did not make.
    pub fn foreign_secrets(&self, names: &Names) -> Vec<String> {
        self.named_like_ours(names)
            .filter(|l| l.label != names_moniker(names))
            .map(|l| l.name.clone())
            .collect()
    }

    fn named_like_ours<'a>(&'a self, names: &Names) -> impl Iterator<Item = &'a Listed> {
        let prefix = crate::creds::secret_prefix(names);
        self.of(Kind::Secret)
            .unwrap_or_default()
            .iter()
            .filter(move |l| is_rbm_secret_name(&l.name, &prefix))
    }
}

/// The moniker of `names` (`rbm-M-sentry` -> `M`).
fn names_moniker(names: &Names) -> &str {
    let m = names
        .sentry
        .strip_suffix("-sentry")
        .unwrap_or(&names.sentry);
    m.strip_prefix("rbm-").unwrap_or(m)
}

/// Whether `name` is one rbm gives the secrets it makes for a profile
/// whose secrets start with `prefix`.
fn is_rbm_secret_name(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with("cred-") || rest == "ca" || rest == "ca-bundle")
}

/// The `rbm.moniker` label of each listed secret named like rbm's for
/// `names` (one `podman secret inspect`, only if there are such secrets:
/// `podman secret ls` shows no labels and filters by none on Podman 5.4).
/// If it fails, they count as not rbm's: `stop` leaves them.
fn secret_labels(podman: &Podman, names: &Names, all: &[Listed]) -> Vec<Listed> {
    let prefix = crate::creds::secret_prefix(names);
    let ours: Vec<String> = all
        .iter()
        .filter(|l| is_rbm_secret_name(&l.name, &prefix))
        .map(|l| l.name.clone())
        .collect();
    if ours.is_empty() {
        return all.to_vec();
    }
    let labelled = podman
        .output(&args::secret_labels(&ours))
        .map(|out| listed(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or_default();
    all.iter()
        .map(|l| {
            let label = labelled
                .iter()
                .find(|x| x.name == l.name)
                .map_or(String::new(), |x| x.label.clone());
            Listed {
                name: l.name.clone(),
                label,
            }
        })
        .collect()
}

/// What `podman KIND ls` prints; None if it failed.
fn list(podman: &Podman, kind: Kind) -> Option<String> {
    podman.run(&kind.list()).ok()
}

/// The objects of a listing: each line's first word, and what follows its
/// tab (the label), if any.
fn listed(listing: &str) -> Vec<Listed> {
    listing
        .lines()
        .filter_map(|line| {
            let (head, label) = line.split_once('\t').unwrap_or((line, ""));
            let name = head.split_whitespace().next()?;
            Some(Listed {
                name: name.to_string(),
                label: label.trim().to_string(),
            })
        })
        .collect()
}

/// A listing without the labels (what precedes each line's tab).
fn heads(listing: &str) -> String {
    listing
        .lines()
        .map(|line| line.split_once('\t').map_or(line, |(head, _)| head))
        .collect::<Vec<_>>()
        .join("\n")
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
        let names = profile.names();
        let (images, present) = at_once(
            || Images::ask(podman, profile),
            || Present::ask(podman, &names),
        );
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
pub fn host_and_present(podman: &Podman, names: &Names) -> (Result<Host, Error>, Present) {
    let (present, host) = at_once(|| Present::ask(podman, names), || Host::detect(podman));
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
