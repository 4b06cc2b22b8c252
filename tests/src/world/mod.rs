//! rbm-world, the tests' "internet": an authoritative DNS server for a small
//! zone that logs every query, servers that report who they see, and
//! HTTPS servers that stand in for the model APIs and PyPI and serve git
//! repositories ([`git`] makes them).
//! [`setup`] starts it from a test.

pub mod apis;
pub mod chunks;
pub mod dns;
pub mod git;
pub mod git_http;
pub mod gzip;
pub mod https;
pub mod log;
pub mod pypi;
pub mod server;
pub mod setup;
pub mod zone;
