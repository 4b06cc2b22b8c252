//! Recipes end to end: `rbm-launch run` builds a recipe's image, starts
//! the pair with a workspace, attaches a terminal to the recipe's agent and
//! stops the pair when it exits; the real agent CLIs from npm answer a
//! prompt through the sentry against stand-ins of their APIs in the test
//! world, their key held by the sentry; JupyterLab serves the host through
//! its entry port, runs a kernel and installs from the world's PyPI.
//!
//! Network safety: the profiles' networks are the test's own
//! (10.250.80-89.0/24 and 10.251.80-89.0/24); the agents reach only the
//! test world's stand-ins.
//!
//! Needs root and RBM_PODMAN (like tests/e2e.rs); scripts/test runs it on
//! the first flavour (Podman 5.4 rootful) and on 5.8 rootless.

#[path = "recipes/agents.rs"]
mod agents;
#[path = "recipes/common.rs"]
mod common;
#[path = "recipes/jupyter.rs"]
mod jupyter;
#[path = "recipes/terminal.rs"]
mod terminal;
