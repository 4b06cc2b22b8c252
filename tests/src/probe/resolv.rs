//! The default DNS server: the first `nameserver` of /etc/resolv.conf,
//! parsed here (no libc resolver, the probe is static).

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use super::net::parse_addr;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The first `nameserver` in `text`, port 53.
pub fn first_nameserver(text: &str) -> Option<SocketAddr> {
    text.lines()
        .map(|line| {
            line.split(['#', ';'])
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
        })
        .find_map(|words| match words[..] {
            ["nameserver", addr, ..] => parse_addr(addr, 53).ok(),
            _ => None,
        })
}

/// The first nameserver of the resolv.conf at `path`.
pub fn default_server(path: &Path) -> Result<SocketAddr, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("io: cannot read {}: {e}", path.display()))?;
    first_nameserver(&text)
        .ok_or_else(|| format!("io: no numeric nameserver in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_numeric_nameserver() {
        let text = "# generated\nsearch example.test\nnameserver bogus\nnameserver 10.242.0.2 # sentry\nnameserver 1.1.1.1\n";
        assert_eq!(first_nameserver(text).unwrap().to_string(), "10.242.0.2:53");
        assert_eq!(
            first_nameserver("nameserver fd00:242::2\n")
                .unwrap()
                .to_string(),
            "[fd00:242::2]:53"
        );
        assert!(first_nameserver("search x\n").is_none());
    }
}
