use super::*;
use std::path::Path;

pub(crate) const PROFILE: &str = r#"
moniker = "demo"
[bottle]
image = "localhost/rbm-demo-bottle:latest"
command = ["sleep", "infinity"]
env = { B = "2", A = "1" }
volumes = ["./work:/workspace", { host = "/data", bottle = "/data", read_only = true, outside = true }]
workdir = "/workspace"
[enclave]
subnet = "10.242.0.0/24"
sentry_ip = "10.242.0.2"
bottle_ip = "10.242.0.3"
[uplink]
dns = "allowlist"
access = "allowlist"
domains = ["pypi.org"]
subnet = "10.243.0.0/24"
[[entry]]
host_port = 8890
bottle_port = 8888
[[entry]]
host_port = 5353
bottle_port = 53
protocol = "udp"
"#;

fn profile() -> Profile {
    Profile::parse(PROFILE, Path::new("/repo/profiles/demo.toml")).unwrap()
}

const OWNER: &str = "/repo/profiles/demo.toml";

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn enclave_network_routes_everything_via_the_sentry() {
    assert_eq!(
        network_create_enclave(&profile(), OWNER),
        words("network create --internal --disable-dns --subnet 10.242.0.0/24 --route 0.0.0.0/0,10.242.0.2,1000 --label rbm.moniker=demo --label rbm.profile=/repo/profiles/demo.toml rbm-demo-enclave")
    );
}

#[test]
fn uplink_network_takes_the_optional_subnet() {
    let mut p = profile();
    assert_eq!(
        network_create_uplink(&p, OWNER),
        words("network create --subnet 10.243.0.0/24 --label rbm.moniker=demo --label rbm.profile=/repo/profiles/demo.toml rbm-demo-uplink")
    );
    p.uplink.subnet = None;
    assert_eq!(
        network_create_uplink(&p, OWNER),
        words("network create --label rbm.moniker=demo --label rbm.profile=/repo/profiles/demo.toml rbm-demo-uplink")
    );
}

#[test]
fn sentry_run_is_exact() {
    let want = words(
        "run -d --pull=never --name rbm-demo-sentry --label rbm.moniker=demo --label rbm.profile=/repo/profiles/demo.toml \
         --network rbm-demo-uplink --network rbm-demo-enclave:ip=10.242.0.254 \
         --cap-drop ALL --cap-add NET_ADMIN --cap-add NET_BIND_SERVICE \
         --sysctl net.ipv4.ip_forward=0 -e RBM_PROFILE \
         -p 127.0.0.1:8890:8890/tcp -p 127.0.0.1:5353:5353/udp localhost/rbm-sentry:latest run",
    );
    assert_eq!(
        sentry_run(&profile(), OWNER, "localhost/rbm-sentry:latest", &[]),
        want
    );
    assert_eq!(
        sentry_env(PROFILE),
        [("RBM_PROFILE".to_string(), PROFILE.to_string())]
    );
}

#[test]
fn bottle_run_is_exact() {
    let p = profile();
    let vols = [
        "/repo/profiles/work:/workspace".into(),
        "/data:/data:ro".into(),
    ];
    assert_eq!(
        bottle_run(&p, OWNER, &vols, &[]),
        words(
            "run -d --pull=never --name rbm-demo-bottle --label rbm.moniker=demo --label rbm.profile=/repo/profiles/demo.toml \
             --network rbm-demo-enclave:ip=10.242.0.3 --dns 10.242.0.2 \
             --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER \
             --cap-add KILL --cap-add SETGID --cap-add SETUID --cap-add NET_BIND_SERVICE \
             -e A=1 -e B=2 \
             -v /repo/profiles/work:/workspace -v /data:/data:ro -w /workspace \
             localhost/rbm-demo-bottle:latest sleep infinity"
        )
    );
}

#[test]
fn bottle_without_command_uses_the_image_default() {
    let mut p = profile();
    p.bottle.command = None;
    p.bottle.workdir = None;
    let a = bottle_run(&p, OWNER, &[], &[]);
    assert_eq!(a.last().unwrap(), "localhost/rbm-demo-bottle:latest");
    assert!(!a.contains(&"-w".to_string()) && !a.contains(&"-v".to_string()));
}

#[test]
fn bottle_never_joins_the_uplink_and_never_publishes() {
    let a = bottle_run(&profile(), OWNER, &[], &[]);
    assert!(
        !a.iter().any(|w| w.contains("uplink") || w == "-p"),
        "{a:?}"
    );
}

#[test]
fn bottle_drops_every_capability_but_the_listed_ones() {
    let a = bottle_run(&profile(), OWNER, &[], &[]);
    let drop = a.iter().position(|w| w == "--cap-drop").unwrap();
    assert_eq!(a[drop + 1], "ALL");
    let added: Vec<&str> = a
        .windows(2)
        .filter(|w| w[0] == "--cap-add")
        .map(|w| w[1].as_str())
        .collect();
    assert_eq!(added, BOTTLE_CAPS);
    for never in [
        "NET_ADMIN",
        "NET_RAW",
        "FSETID",
        "SETFCAP",
        "MKNOD",
        "SYS_CHROOT",
        "SETPCAP",
        "SYS_ADMIN",
    ] {
        assert!(!added.contains(&never), "{never} in {a:?}");
    }
    let cap_drop = a.iter().filter(|w| *w == "--cap-drop").count();
    assert_eq!(cap_drop, 1, "ALL is dropped first, once: {a:?}");
}

#[test]
fn stop_removes_bottle_then_sentry_then_networks() {
    let names = profile().names();
    let cmds: Vec<Vec<String>> = containers(&names)
        .into_iter()
        .chain(networks(&names))
        .map(|r| r.rm)
        .collect();
    assert_eq!(
        cmds,
        vec![
            words("rm --force --ignore --time 0 rbm-demo-bottle"),
            words("rm --force --ignore --time 0 rbm-demo-sentry"),
            words("network rm rbm-demo-enclave"),
            words("network rm rbm-demo-uplink"),
        ]
    );
}

#[test]
fn exec_commands() {
    assert_eq!(
        agent_status("s", true),
        words("exec s /rbm-agent status --json")
    );
    assert_eq!(agent_status("s", false), words("exec s /rbm-agent status"));
    assert_eq!(shell("b", true, &[]), words("exec -i -t b /bin/sh"));
    assert_eq!(
        shell("b", false, &words("rbm-probe dns example.com")),
        words("exec b rbm-probe dns example.com")
    );
}

#[test]
fn image_commands() {
    assert_eq!(
        image_label("img", "rbm.agent.stamp"),
        vec![
            "image",
            "inspect",
            "--format",
            "{{index .Labels \"rbm.agent.stamp\"}}",
            "img"
        ]
    );
    assert_eq!(
        import("img", "amd64", &["CMD [\"run\"]".into()]),
        vec![
            "import",
            "--quiet",
            "--arch",
            "amd64",
            "--change",
            "CMD [\"run\"]",
            "-",
            "img"
        ]
    );
}
