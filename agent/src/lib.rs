//! rbm-agent: the sentry's filtering agent.
//!
//! `profile` (the rbm-profile crate) reads the user's TOML, `policy` decides per DNS name,
//! `firewall` turns the policy into one nftables table and sends it over
//! netlink, `carried` what a restarted agent keeps of its predecessor's, `links` fixes interfaces and routes over rtnetlink, `dns` is the
//! allowlisting proxy, `inuse` keeps learned addresses that connections
//! use open past their TTL, `state` what the running agent knows, `status` the
//! control socket and `run` the agent's startup sequence.

pub mod carried;
pub mod creds;
pub mod denylog;
pub mod dns;
pub mod firewall;
pub mod inuse;
pub mod learning;
pub mod links;
pub mod names;
pub mod policy;
pub mod reload;
pub use rbm_profile as profile;
pub mod run;
pub mod shown;
pub mod state;
pub mod status;
pub mod supervise;
