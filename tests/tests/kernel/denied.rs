//! The deny log in the kernel: every connection attempt the sentry drops
//! is recorded with its reason in words, shown by status and streamed by
//! `rbm-agent watch`.

use super::*;

/// How long the agent may take to log a drop.
const LOGGED_WITHIN: Duration = Duration::from_secs(5);

impl Lab {
    /// Waits until status lists a denial to `dst` whose reason starts with
    /// `reason`; returns it.
    pub(super) fn denial(&self, dst: SocketAddr, reason: &str) -> Result<Value> {
        let deadline = Instant::now() + LOGGED_WITHIN;
        loop {
            let status = self.status()?;
            let found = status["denied"].as_array().and_then(|list| {
                list.iter()
                    .find(|d| {
                        d["dst"] == dst.to_string()
                            && d["reason"].as_str().is_some_and(|r| r.starts_with(reason))
                    })
                    .cloned()
            });
            if let Some(found) = found {
                return Ok(found);
            }
            ensure!(
                Instant::now() < deadline,
                "no denial of {dst} for {reason:?} in {}",
                status["denied"]
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn every_drop_is_logged_with_its_reason_in_words() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    lab.blocked(&[("tcp", sock(NEVER, 80))])?;
    let never = lab.denial(sock(NEVER, 80), "never resolved")?;
    assert_eq!(never["proto"], "tcp");
    assert_eq!(never["kind"], "connection");

    lab.resolve("ports.example.test", PORTS)?;
    lab.blocked(&[("udp", sock(PORTS, 80))])?;
    let port = lab.denial(
        sock(PORTS, 80),
        "port 80 not allowed for ports.example.test",
    )?;
    assert_eq!(port["name"], "ports.example.test");

    lab.blocked(&[("tcp", sock(SENTRY_ENCLAVE_V4, 22))])?;
    lab.denial(sock(SENTRY_ENCLAVE_V4, 22), "to the sentry itself")?;

    // short.example.test: TTL 1, min_ttl 1.
    lab.resolve("short.example.test", SHORT)?;
    thread::sleep(Duration::from_millis(2500));
    lab.blocked(&[("tcp", sock(SHORT, 80))])?;
    let expired = lab.denial(sock(SHORT, 80), "expired ")?;
    let reason = str_field(&expired, "reason")?;
    assert!(reason.ends_with(" s ago (short.example.test)"), "{reason}");

    let status = lab.status()?;
    assert!(status["denied_total"].as_u64() >= Some(4), "{status}");
    Ok(())
}

#[test]
fn watch_follows_denials_as_they_happen() -> Result<()> {
    let Some(lab) = lab(STANDARD)? else {
        return Ok(());
    };
    let agent = static_bin("rbm-agent")?.to_string_lossy().into_owned();
    let control = lab.agent.control.to_string_lossy().into_owned();
    let mut watch = lab.topo.spawn(
        Ns::Sentry,
        &agent,
        &["watch", "--json", "--control", &control],
    )?;
    thread::sleep(Duration::from_millis(300));
    lab.blocked(&[("tcp", sock(EVIL, 80))])?;
    let line = watch.wait_for(
        |l| l.contains("never resolved"),
        "a denial of evil's address",
        LOGGED_WITHIN,
    )?;
    let event: Value = serde_json::from_str(&line)?;
    assert_eq!(event["dst"], sock(EVIL, 80).to_string(), "{event}");
    let refused = lab.dns("evil.example.test", &[])?;
    assert_eq!(str_field(&refused, "rcode")?, "Refused");
    let line = watch.wait_for(|l| l.contains("\"dns\""), "a refused name", LOGGED_WITHIN)?;
    assert!(line.contains("evil.example.test"), "{line}");
    Ok(())
}
