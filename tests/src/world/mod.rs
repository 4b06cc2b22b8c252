//! rbm-world, the tests' "internet": an authoritative DNS server for a small
//! zone that logs every query, and servers that report who they see.
//! [`setup`] starts it from a test.

pub mod dns;
pub mod gzip;
pub mod https;
pub mod log;
pub mod server;
pub mod setup;
pub mod zone;
