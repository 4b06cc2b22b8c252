//! The up/stop sequence against a fake podman (a shell script that logs its
//! arguments and answers as told).

use super::*;
use crate::podman::host::Host;
use crate::podman::host::Mode;
use crate::testing::fake_program;
use std::path::Path;

const PROFILE: &str = r#"
moniker = "demo"
[bottle]
image = "localhost/rbm-demo-bottle:latest"
command = ["sleep", "infinity"]
volumes = ["./work:/workspace"]
[enclave]
subnet = "10.242.0.0/24"
sentry_ip = "10.242.0.2"
bottle_ip = "10.242.0.3"
[uplink]
dns = "allowlist"
access = "allowlist"
domains = ["pypi.org"]
[[entry]]
host_port = 8890
bottle_port = 8888
"#;

struct Fake {
    dir: tempfile::TempDir,
    podman: Podman,
    loaded: Loaded,
    opts: UpOptions,
}

/// `status` is what `podman exec ... status --json` prints (exit 0),
/// `running` what `container inspect` prints, `fail` a shell case pattern
/// for commands that fail. The profile's containers and networks are
/// listed as there (left from before), so `up` removes them first.
fn fake(status: &str, running: &str, fail: &str) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // One write a call: calls made at once must not mix their lines.
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$(echo \"$*\" | tr '\\n' ' ')\" >> {log}\n\
         case \"$*\" in {fail}) echo 'Error: simulated' >&2; exit 1;; esac\n\
         case \"$1 $2\" in\n  'exec '*) printf '%s' '{status}';;\n  'container inspect') echo {running};;\n  'image inspect') exit 125;;\n  'import '*) cat > /dev/null;;\n  \
         'ps --all') printf 'rbm-demo-bottle\\t{owner}\\nrbm-demo-sentry\\t{owner}\\n';;\n  'version --format') echo '5.8.6|linux/amd64';;\n  'info --format') echo '5.8.6|true|amd64|netavark 1.17.2';;\n  'network ls') printf 'podman 10.88.0.0/16 10.88.0.1\\t\\nrbm-demo-enclave 10.242.0.0/24 <nil>\\t{owner}\\nrbm-demo-uplink 10.89.0.0/24 10.89.0.1\\t{owner}\\n';;\nesac\nexit 0\n",
        log = d.join("log").display(),
        owner = d.join("demo.toml").display()
    );
    let podman = fake_program(d, "podman", &script);
    std::fs::write(d.join("agent"), "bin").unwrap();
    let path = d.join("demo.toml");
    let profile = Profile::parse(PROFILE, &path).unwrap();
    let loaded = Loaded {
        path,
        dir: d.to_path_buf(),
        text: PROFILE.into(),
        profile,
        workspace: None,
        recipe: None,
        workspace_volume: None,
    };
    let opts = UpOptions {
        agent: d.join("agent"),
        ready_timeout: Duration::from_millis(300),
        profile_arg: "demo".into(),
    };
    Fake {
        podman: Podman::new(podman),
        loaded,
        opts,
        dir,
    }
}

impl Fake {
    fn up(&self) -> Result<Vec<ResolvedVolume>, Error> {
        let survey = Survey::ask(&self.podman, &self.loaded.profile);
        up_surveyed(
            &self.podman,
            "amd64",
            BottleRoot::Podman,
            &self.loaded,
            &self.opts,
            survey,
        )
    }
    /// The calls made, first three words each. Calls made at once are in
    /// the order they were made in; `at_once` sorts them.
    fn calls(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        log.lines()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect()
    }
    fn bottle_started(&self) -> bool {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        log.lines()
            .any(|l| l.starts_with("run ") && l.contains("--name rbm-demo-bottle"))
    }
}

fn host() -> Host {
    Host {
        version: "5.8.6".into(),
        mode: Mode::Rootless,
        arch: "amd64".into(),
        network: "netavark 1.17.2".into(),
        remote: false,
    }
}

/// What exists, asked at once (sorted).
const PRESENT: [&str; 3] = [
    "network ls --format",
    "ps --all --format",
    "secret ls --format",
];

/// The survey before `up` changes anything, asked at once (sorted).
const SURVEY: [&str; 5] = [
    "image exists localhost/rbm-demo-bottle:latest",
    "image inspect --format",
    "network ls --format",
    "ps --all --format",
    "secret ls --format",
];

/// The removals of what exists: the bottle, the sentry, then both
/// networks at once (sorted).
const REMOVE_ALL: [&str; 4] = [
    "rm --force --ignore",
    "rm --force --ignore",
    "network rm rbm-demo-enclave",
    "network rm rbm-demo-uplink",
];

/// `calls` with the `n` calls from `from` on sorted: calls made at once.
fn at_once(mut calls: Vec<String>, from: usize, n: usize) -> Vec<String> {
    calls[from..from + n].sort();
    calls
}

/// The end of `calls` is a `stop`: what exists asked, then all removed.
fn assert_ends_in_a_full_stop(calls: &[String]) {
    let tail = calls.len() - REMOVE_ALL.len() - PRESENT.len();
    let calls = at_once(calls.to_vec(), tail, PRESENT.len());
    let calls = at_once(calls, tail + PRESENT.len() + 2, 2);
    assert_eq!(calls[tail..tail + PRESENT.len()], PRESENT, "{calls:?}");
    assert_eq!(calls[tail + PRESENT.len()..], REMOVE_ALL, "{calls:?}");
}

#[test]
fn up_builds_clears_creates_waits_then_starts_the_bottle() {
    let f = fake(r#"{"ready":true}"#, "true", "__never__");
    f.up().unwrap();
    let mut want = SURVEY.to_vec();
    want.push("import --quiet --arch");
    want.extend(REMOVE_ALL);
    // The two networks at once (sorted).
    want.extend([
        "network create --internal",
        "network create --label",
        "run -d --pull=never",
    ]);
    want.extend(["exec rbm-demo-sentry /rbm-agent", "run -d --pull=never"]);
    let calls = at_once(f.calls(), 0, SURVEY.len());
    let calls = at_once(calls, SURVEY.len() + 3, 2);
    assert_eq!(at_once(calls, SURVEY.len() + 5, 2), want);
    assert!(f.bottle_started());
    assert!(
        f.dir.path().join("work").is_dir(),
        "relative volume directory is created"
    );
    // Nothing of the profile's text is in an argument vector (any local
    // user reads those in /proc): RBM_PROFILE is named, its value is in
    // podman's environment.
    let log = std::fs::read_to_string(f.dir.path().join("log")).unwrap();
    assert!(
        !log.contains("pypi.org") && !log.contains("moniker ="),
        "{log}"
    );
    assert!(log.contains("-e RBM_PROFILE "), "{log}");
    // What rbm creates says which profile file made it.
    let owner = format!("rbm.profile={}", f.loaded.path.display());
    let made: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("run ") || l.starts_with("network create"))
        .collect();
    assert_eq!(made.len(), 4, "{log}");
    assert!(made.iter().all(|l| l.contains(&owner)), "{made:?}");
}

/// The labels of a listing: each name with `label`.
fn labelled(names: &[&str], label: &str) -> Option<Vec<Listed>> {
    Some(
        names
            .iter()
            .map(|n| Listed {
                name: n.to_string(),
                label: label.to_string(),
            })
            .collect(),
    )
}

#[test]
fn a_moniker_is_owned_by_the_profile_file_that_started_it() {
    let f = fake("", "true", "__never__");
    let names = f.loaded.profile.names();
    let this = f.loaded.owner();
    let pair = |label: &str| {
        Present::from_listed(
            labelled(&["rbm-demo-bottle", "rbm-demo-sentry"], label),
            labelled(&["podman", "rbm-demo-enclave", "rbm-demo-uplink"], label),
            Some(vec![]),
        )
    };
    assert_eq!(
        Present::from_listed(Some(vec![]), Some(vec![]), None).owner(&names, &this),
        Owner::Nobody
    );
    assert_eq!(pair(&this).owner(&names, &this), Owner::This);
    assert_eq!(pair("").owner(&names, &this), Owner::Unlabelled);
    assert_eq!(
        pair("/x/other.toml").owner(&names, &this),
        Owner::Other("/x/other.toml".into())
    );
    assert_eq!(Present::default().owner(&names, &this), Owner::Unknown);
    // One object of another file among ours is enough.
    let mixed = Present::from_listed(
        labelled(&["rbm-demo-bottle"], &this),
        labelled(&["rbm-demo-uplink"], "/x/other.toml"),
        None,
    );
    assert_eq!(
        mixed.owner(&names, &this),
        Owner::Other("/x/other.toml".into())
    );

    for action in [Action::Up, Action::Stop] {
        assert!(may_take(&pair(&this), &f.loaded, "demo", action).is_ok());
        let err = may_take(&pair("/x/other.toml"), &f.loaded, "demo", action)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the profile file /x/other.toml started")
                && err.contains("rbm-launch stop /x/other.toml"),
            "{err}"
        );
    }
    // A pair from before labels: `stop` cleans it up, `up` does not replace it.
    assert!(may_take(&pair(""), &f.loaded, "demo", Action::Stop).is_ok());
    let err = may_take(&pair(""), &f.loaded, "demo", Action::Up).unwrap_err();
    assert!(err.to_string().contains("older rbm-launch"), "{err}");
}

#[test]
fn up_of_another_file_with_the_moniker_touches_nothing() {
    let f = fake(r#"{"ready":true}"#, "true", "__never__");
    let script = std::fs::read_to_string(f.podman.program())
        .unwrap()
        .replace(&f.loaded.path.display().to_string(), "/elsewhere/mine.toml");
    fake_program(f.dir.path(), "podman", &script);
    let err = f.up().unwrap_err().to_string();
    assert!(err.contains("/elsewhere/mine.toml"), "{err}");
    assert_eq!(at_once(f.calls(), 0, SURVEY.len()), SURVEY, "only asked");
}

#[test]
fn stop_removes_only_the_secrets_rbm_made() {
    let names = Names::new("demo");
    let secrets = Present::from_listed(
        Some(vec![]),
        Some(vec![]),
        Some(vec![
            Listed {
                name: "rbm-demo-ca".into(),
                label: "demo".into(),
            },
            Listed {
                name: "rbm-demo-cred-A".into(),
                label: "demo".into(),
            },
            // Made by a user under rbm's kind of name, for `podman-secret:`.
            Listed {
                name: "rbm-demo-cred-MINE".into(),
                label: String::new(),
            },
            Listed {
                name: "rbm-other-ca".into(),
                label: "other".into(),
            },
        ]),
    );
    assert_eq!(
        secrets.our_secrets(&names),
        ["rbm-demo-ca", "rbm-demo-cred-A"]
    );
    assert_eq!(secrets.foreign_secrets(&names), ["rbm-demo-cred-MINE"]);
    // `up` would replace it (`secret create --replace`): refused.
    let mut p = rbm_profile::Profile::parse(
        &format!(
            "{PROFILE}[[credential]]\nenv = \"MINE\"\nfrom = \"env:X\"\nhosts = [\"pypi.org\"]\n"
        ),
        Path::new("/p/demo.toml"),
    )
    .unwrap();
    let err = secrets_free(&secrets, &p, "demo").unwrap_err().to_string();
    assert!(
        err.contains("rbm-demo-cred-MINE exists and rbm did not make it"),
        "{err}"
    );
    p.credentials[0].env = "OTHER".into();
    assert!(secrets_free(&secrets, &p, "demo").is_ok());
}

#[test]
fn up_hands_the_sentry_every_podman_network_and_this_machine_s_addresses() {
    let f = fake(r#"{"ready":true}"#, "true", "__never__");
    f.up().unwrap();
    let log = std::fs::read_to_string(f.dir.path().join("log")).unwrap();
    let sentry = log
        .lines()
        .find(|l| l.starts_with("run ") && l.contains("--name rbm-demo-sentry"))
        .expect("the sentry was started");
    let value = sentry
        .split_whitespace()
        .find_map(|w| w.strip_prefix("RBM_HOST_NETS="))
        .expect("the sentry gets RBM_HOST_NETS");
    let nets: Vec<&str> = value.split(',').collect();
    assert_eq!(
        nets[..5],
        [
            "10.88.0.0/16",
            "10.88.0.1",
            "10.242.0.0/24",
            "10.89.0.0/24",
            "10.89.0.1"
        ],
        "{value}"
    );
    for net in crate::hostnets::local() {
        let text = net.addr().to_string();
        assert!(nets.contains(&text.as_str()), "{text} missing from {value}");
    }
}

#[test]
fn up_asks_the_mode_with_the_survey_not_before_it() {
    let f = fake(r#"{"ready":true}"#, "true", "__never__");
    launch_up(&f, "amd64").unwrap();
    let calls = f.calls();
    let mut asked = SURVEY.to_vec();
    asked.push("info --format {{.Version.Version}}|{{.Host.Security.Rootless}}|{{.Host.Arch}}|{{.Host.NetworkBackendInfo.Version}}|{{.Host.ServiceIsRemote}}");
    asked.sort();
    assert_eq!(at_once(calls.clone(), 0, asked.len())[..asked.len()], asked);
    assert!(!calls.iter().any(|c| c.starts_with("version")), "{calls:?}");
    assert!(f.bottle_started());
}

#[test]
fn a_failure_gets_the_fix_of_the_mode_podman_says_then() {
    let f = fake(r#"{"ready":true}"#, "true", "*'run -d'*rbm-demo-sentry*");
    let refused = "Error: rootlessport cannot expose privileged port 80";
    let script = std::fs::read_to_string(f.podman.program())
        .unwrap()
        .replace("Error: simulated", refused);
    fake_program(f.dir.path(), "podman", &script);
    let rootless = launch_up(&f, "amd64").unwrap_err().to_string();
    assert!(rootless.contains(refused), "{rootless}");
    assert!(
        rootless.contains("fix: rootless Podman cannot publish"),
        "{rootless}"
    );
    fake_program(f.dir.path(), "podman", &script.replace("|true|", "|false|"));
    let rootful = launch_up(&f, "amd64").unwrap_err().to_string();
    assert!(rootful.contains(refused), "{rootful}");
    assert!(!rootful.contains("fix: rootless"), "{rootful}");
}

#[test]
fn a_rootful_bottle_runs_in_a_user_namespace_a_rootless_one_in_podmans() {
    let f = fake(r#"{"ready":true}"#, "true", "__never__");
    let bottle_run = |f: &Fake| {
        let log = std::fs::read_to_string(f.dir.path().join("log")).unwrap();
        let line = log
            .lines()
            .find(|l| l.starts_with("run ") && l.contains("--name rbm-demo-bottle"))
            .unwrap()
            .to_string();
        std::fs::remove_file(f.dir.path().join("log")).unwrap();
        line
    };
    launch_up(&f, "amd64").unwrap();
    let rootless = bottle_run(&f);
    assert!(rootless.contains(" --cap-drop ALL "), "{rootless}");
    assert!(!rootless.contains("--uidmap"), "{rootless}");
    let script = std::fs::read_to_string(f.podman.program()).unwrap();
    fake_program(f.dir.path(), "podman", &script.replace("|true|", "|false|"));
    launch_up(&f, "amd64").unwrap();
    let rootful = bottle_run(&f);
    assert!(rootful.contains(" --uidmap 0:"), "{rootful}");
    assert!(rootful.contains(" --gidmap 0:"), "{rootful}");
    assert!(!rootful.contains("--uidmap 0:0:"), "{rootful}");
}

/// `launch::up` from the start, checking the architecture it chose for.
fn launch_up(f: &Fake, arch: &str) -> Result<(), Error> {
    up(&f.podman, &f.loaded, |engine| {
        assert_eq!(engine.arch, arch);
        Ok(f.opts.clone())
    })
}

#[test]
fn sentry_that_exits_means_no_bottle_and_full_cleanup() {
    let f = fake("", "false", "exec*");
    let err = f.up().unwrap_err();
    assert!(matches!(err, Error::SentryExited { .. }), "{err}");
    assert!(!f.bottle_started());
    let calls = f.calls();
    assert_ends_in_a_full_stop(&calls);
    assert_eq!(
        calls[calls.len() - REMOVE_ALL.len() - PRESENT.len() - 1],
        "logs rbm-demo-sentry",
        "log is printed before cleanup"
    );
}

#[test]
fn not_ready_json_times_out_without_a_bottle() {
    let f = fake(r#"{"ready":false}"#, "true", "__never__");
    let err = f.up().unwrap_err().to_string();
    assert!(
        err.starts_with("sentry rbm-demo-sentry did not become ready within 0s"),
        "{err}"
    );
    assert!(err.contains("fix:"), "{err}");
    assert!(!f.bottle_started());
    assert!(
        f.calls().iter().filter(|c| c.starts_with("exec")).count() >= 2,
        "polled more than once"
    );
}

#[test]
fn failed_step_is_reported_with_all_cleanup_failures() {
    let f = fake(
        r#"{"ready":true}"#,
        "true",
        "*'run -d'*rbm-demo-sentry*|'network rm rbm-demo-uplink'",
    );
    // The first clearing `network rm` fails too, so up stops before creating anything.
    let err = f.up().unwrap_err();
    assert!(matches!(err, Error::StopFailed { .. }), "{err}");
    assert!(!f.calls().iter().any(|c| c.starts_with("network create")));

    let f = fake(r#"{"ready":true}"#, "true", "*'run -d'*rbm-demo-sentry*");
    let err = f.up().unwrap_err().to_string();
    assert!(
        err.contains("rbm-demo-sentry") && err.contains("Error: simulated"),
        "{err}"
    );
    assert!(!f.bottle_started());
    assert_ends_in_a_full_stop(&f.calls());
}

#[test]
fn cleanup_failures_are_collected() {
    let f = fake("", "false", "exec*");
    let err = up_with_failing_network_rm(&f);
    let s = err.to_string();
    assert!(s.starts_with("sentry rbm-demo-sentry exited"), "{s}");
    assert!(
        s.contains("cleanup also failed: `") && s.contains("network rm rbm-demo-enclave"),
        "{s}"
    );
    assert!(s.contains("rbm-launch stop demo"), "{s}");
}

/// Makes `network rm rbm-demo-enclave` fail only after the first clearing pass.
fn up_with_failing_network_rm(f: &Fake) -> Error {
    let marker = f.dir.path().join("cleared");
    let script = std::fs::read_to_string(f.podman.program()).unwrap().replacen(
        "case \"$1 $2\" in",
        &format!(
            "if [ \"$*\" = 'network rm rbm-demo-enclave' ]; then if [ -e {m} ]; then echo 'Error: busy' >&2; exit 2; fi; touch {m}; fi\ncase \"$1 $2\" in",
            m = marker.display()
        ),
        1,
    );
    fake_program(f.dir.path(), "podman", &script);
    f.up().unwrap_err()
}

#[test]
fn stop_keeps_the_sentry_when_the_bottle_cannot_be_removed() {
    let f = fake("", "true", "'rm '*rbm-demo-bottle");
    let err = stop(&f.podman, &f.loaded.profile.names(), "demo").unwrap_err();
    assert!(
        matches!(&err, Error::StopFailed { failures, .. } if failures.len() == 1),
        "{err}"
    );
    // The failed removal is checked (the bottle still exists), then nothing more.
    let mut want = PRESENT.to_vec();
    want.extend(["rm --force --ignore", "container exists rbm-demo-bottle"]);
    assert_eq!(at_once(f.calls(), 0, PRESENT.len()), want);
}

#[test]
fn stop_keeps_going_after_network_failures() {
    let f = fake("", "true", "'network rm rbm-demo-enclave'");
    let err = stop(&f.podman, &f.loaded.profile.names(), "demo")
        .unwrap_err()
        .to_string();
    let mut want = PRESENT.to_vec();
    want.extend(REMOVE_ALL);
    // At once with the other network's removal (sorted).
    want.insert(PRESENT.len() + 2, "network exists rbm-demo-enclave");
    let calls = at_once(f.calls(), 0, PRESENT.len());
    assert_eq!(at_once(calls, PRESENT.len() + 2, 3), want);
    assert!(
        err.starts_with("could not remove everything of profile demo:"),
        "{err}"
    );
}

#[test]
fn missing_bottle_image_or_agent_touches_nothing() {
    let f = fake("", "true", "'image exists'*");
    assert!(matches!(
        f.up().unwrap_err(),
        Error::BottleImageMissing { .. }
    ));
    assert_eq!(at_once(f.calls(), 0, SURVEY.len()), SURVEY, "only asked");
    let mut f = fake("", "true", "__never__");
    f.opts.agent = f.dir.path().join("none");
    assert!(matches!(f.up().unwrap_err(), Error::AgentMissing { .. }));
    assert_eq!(at_once(f.calls(), 0, SURVEY.len()), SURVEY, "only asked");
}

#[test]
fn a_clean_start_removes_nothing() {
    // Without the containers, who owns the moniker is unknown: nothing
    // is removed or started.
    let f = fake(r#"{"ready":true}"#, "true", "'ps --all'*");
    let err = f.up().unwrap_err().to_string();
    assert!(err.contains("could not list"), "{err}");
    assert!(
        !f.calls()
            .iter()
            .any(|c| c.starts_with("rm ") || c.starts_with("run ")),
        "{:?}",
        f.calls()
    );
    // Without the networks, neither their owner is known nor can their
    // gateways be withheld: nothing starts.
    let f = fake(r#"{"ready":true}"#, "true", "'network ls'*");
    let err = f.up().unwrap_err().to_string();
    assert!(err.contains("`podman network ls` work"), "{err}");
    assert!(
        !f.calls().iter().any(|c| c.starts_with("run ")),
        "{:?}",
        f.calls()
    );
    let f = fake(r#"{"ready":true}"#, "true", "__never__");
    let script = std::fs::read_to_string(f.podman.program())
        .unwrap()
        .replace("rbm-demo-", "other-");
    fake_program(f.dir.path(), "podman", &script);
    f.up().unwrap();
    let calls = f.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("rm ") || c.contains(" rm ")),
        "{calls:?}"
    );
    assert!(f.bottle_started());
}

#[test]
fn missing_absolute_volume_is_an_error() {
    let f = fake("", "true", "__never__");
    let mut p = f.loaded.profile.clone();
    p.bottle.volumes = vec![rbm_profile::Volume {
        host: "/nonexistent/rbm/x".into(),
        bottle: "/x".into(),
        read_only: false,
        outside: true,
    }];
    let err =
        prepare_volumes(&p, f.dir.path(), Path::new("demo.toml"), BottleRoot::Podman).unwrap_err();
    assert!(
        matches!(err, Error::VolumeMissing { .. }) && err.exit_code() == 2,
        "{err}"
    );
    assert!(!Path::new("/nonexistent/rbm").exists());
}

#[test]
fn a_missing_workspace_is_created_inside_the_folder_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = fake("", "true", "__never__");
    let dir = f.dir.path().canonicalize().unwrap();
    let vols = prepare_volumes(
        &f.loaded.profile,
        &dir,
        Path::new("demo.toml"),
        BottleRoot::Podman,
    )
    .unwrap();
    let work = dir.join("work");
    assert_eq!(vols[0].host, work);
    assert!(!vols[0].missing && !vols[0].outside);
    let mode = std::fs::metadata(&work).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}

#[test]
fn a_workspace_that_links_out_of_the_folder_is_refused_with_the_file_and_field() {
    let f = fake("", "true", "__never__");
    let dir = f.dir.path().canonicalize().unwrap();
    let away = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(away.path(), dir.join("work")).unwrap();
    let err = prepare_volumes(
        &f.loaded.profile,
        &dir,
        Path::new("demo.toml"),
        BottleRoot::Podman,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("demo.toml")
            && text.contains("bottle.volumes[0]")
            && text.contains("outside the profile's folder")
            && text.contains("fix:"),
        "{text}"
    );
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn ready_needs_json_saying_so() {
    assert!(is_ready(r#"{"ready":true,"learned":[]}"#));
    assert!(!is_ready(r#"{"ready":false}"#));
    assert!(!is_ready(r#"{"ready":"true"}"#));
    assert!(!is_ready("ready"));
    assert!(!is_ready(""));
}

#[test]
fn summary_says_how_to_reach_it() {
    let f = fake("", "true", "__never__");
    let vols = [
        ResolvedVolume {
            host: "/p/work".into(),
            bottle: "/workspace".into(),
            read_only: false,
            outside: false,
            missing: false,
        },
        ResolvedVolume {
            host: "/srv/data".into(),
            bottle: "/data".into(),
            read_only: true,
            outside: true,
            missing: false,
        },
    ];
    let s = summary(&f.loaded.profile, &vols, &host().describe(), "demo");
    assert!(s.contains("  volume  /p/work -> /workspace\n"), "{s}");
    assert!(
        s.contains("  volume  /srv/data -> /data (read-only) [outside the profile's folder]\n"),
        "{s}"
    );
    assert!(
        s.starts_with("rbm: demo is up (moniker demo) on Podman 5.8.6 rootless"),
        "{s}"
    );
    assert!(s.contains("rbm-demo-sentry  10.242.0.2"), "{s}");
    assert!(s.contains("rbm-demo-bottle  10.242.0.3"), "{s}");
    assert!(
        s.contains("http://127.0.0.1:8890 -> bottle port 8888/tcp"),
        "{s}"
    );
    assert!(
        s.contains("rbm-launch status demo") && s.contains("rbm-launch shell demo"),
        "{s}"
    );
}
