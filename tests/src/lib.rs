//! rbm's test support: the skip policy, commands with timeouts, throwaway
//! network namespaces, Podman for the end-to-end tests, the static test
//! binaries, the code of rbm-world (the tests' internet) and rbm-probe
//! (what runs inside a bottle), and for the benchmarks the peer sentry
//! (dnsmasq) and what they share.

pub mod agent;
pub mod bench;
pub mod bins;
pub mod bottle;
pub mod certs;
pub mod cmd;
pub mod encode;
pub mod files;
pub mod json;
pub mod launcher;
pub mod netns;
pub mod peer;
pub mod podman;
pub mod probe;
pub mod pty;
pub mod skip;
pub mod world;

pub use bins::static_bin;
pub use cmd::{run, run_ok, Output, Spawned};
pub use json::{parse_json, probe_json};
pub use netns::{Ns, Topology};
pub use skip::{require_netns, require_root, require_tools, Skipped};
