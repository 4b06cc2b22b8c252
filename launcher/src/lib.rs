//! rbm-launch: starts a bottle behind its sentry on Podman 5, from a profile.
//!
//! `lookup` finds rbm's own files and the profile, `podman` finds and drives
//! the podman CLI (argument vectors in `podman::args`; rootful or rootless in
//! `podman::host`), `images` keeps the sentry image in step with the agent
//! binary, `launch` runs the fail-closed up/stop sequence, `hostnets`
//! gathers the Podman host's addresses the sentry withholds from DNS
//! answers, `owner` says who the bottle's root is on the host (its user
//! namespace) and owns the directories rbm makes for it, `exec` attaches
//! to running containers, and `takes` and `trust` say what a profile
//! takes from the host and want a yes for it.

pub mod creds;
pub mod error;
pub mod exec;
pub mod hostnets;
pub mod images;
pub mod launch;
pub mod lookup;
pub mod owner;
pub mod podman;
pub mod quadlet;
pub mod recipe;
pub mod takes;
pub mod trust;

pub use error::Error;

#[cfg(test)]
pub(crate) mod testing;
