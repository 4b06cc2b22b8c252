//! rbm-launch: starts a bottle behind its sentry on Podman 5, from a profile.
//!
//! `lookup` finds the repository and the profile, `podman` drives the podman
//! CLI (argument vectors in `podman::args`), `images` keeps the sentry image
//! in step with the agent binary, `launch` runs the fail-closed up/stop
//! sequence, and `exec` attaches to running containers.

pub mod error;
pub mod exec;
pub mod images;
pub mod launch;
pub mod lookup;
pub mod podman;

pub use error::Error;
