//! rbm-agent: the sentry's filtering agent.
//!
//! `profile` reads the user's TOML, `policy` decides per DNS name,
//! `firewall` turns the policy into one nftables table and sends it over
//! netlink, `links` fixes interfaces and routes over rtnetlink, `dns` is the
//! allowlisting proxy and `status` the control socket.

pub mod policy;
pub mod profile;
pub mod firewall;
