//! JupyterLab from its built-in recipe (its own Containerfile, profile and
//! `attach`), run with `rbm-launch run --keep`: the address with the token
//! that Jupyter prints reaches it from the host through the entry port
//! (the sentry's), the token guards it, a kernel started over the REST
//! API runs code sent over its WebSocket channel, `%pip install` in the
//! kernel fetches a package through the sentry from the world's PyPI
//! (index on pypi.org, wheel on files.pythonhosted.org) into jovyan's
//! ~/.local and the kernel imports it at once, a notebook it saves is the
//! host user's, and a name the profile does not allow fails from the
//! kernel and never reaches the world. Shutting Jupyter down ends `run`,
//! which keeps the pair; `rbm-launch stop` leaves nothing of it.
//!
//! What the test changes in the recipe's profile, and why: the moniker and
//! the networks (the test's own), `upstream_dns` (the world's DNS), the
//! entry's host port (a free one: 8888 may be taken here), and the
//! world's CA for pip: `PIP_CERT` in `[bottle.env]` naming a read-only
//! volume of the CA's file. A volume, not a test-only `COPY` in the
//! Containerfile: the recipe folder stays the built-in's byte for byte, so
//! the image is the recipe's own and is built once, not again for each
//! run's new CA. The CA's file lies beside the recipe's folder, not in it
//! (every file in the folder is part of the image's name).
//!
//! Why `run --keep` in the background and not `--detach`: `attach` is
//! Jupyter itself, which `--detach` would never start; `run` returns only
//! when Jupyter exits, here when the test shuts it down over the API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use rbm_tests::certs::TestCa;
use rbm_tests::encode::base64;
use rbm_tests::podman::{fresh_dir, recipe_base_image, test_images, RecipeBase, WorldContainer};
use rbm_tests::world::https::HttpsServer;
use rbm_tests::world::pypi::{self, GREETING, MODULE, PACKAGE, VERSION};
use rbm_tests::world::setup::WorldSetup;
use serde_json::{json, Value};

use crate::common::{
    built_in_copy, leftovers, owner_of, poll, wait_for_uplink, write_profile, Ctx, Stop,
    RUN_TIMEOUT,
};

const MONIKER: &str = "rcjupyter";
/// The test's networks: enclave 10.250.N.0/24, uplink 10.251.N.0/24.
const N: u8 = 84;
/// The world's host number on the uplink.
const WORLD_HOST: u8 = 10;
/// A name the profile does not allow; the world would answer it.
const REFUSED: &str = "refused.e2e.test";
/// Where the bottle finds the world's CA (a volume of the test's profile).
const CA_IN_BOTTLE: &str = "/etc/rbm-test/world-ca.pem";
/// What Jupyter prints before the token: its port in the bottle, which
/// the built-in recipe's entry publishes on the host as the same number.
const PRINTED: &str = "http://127.0.0.1:8888/lab?token=";
/// How long Jupyter may take to answer once `run` has printed its address.
const SERVER_START: Duration = Duration::from_secs(60);
/// How long one cell may run (`%pip install` included).
const CELL_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn jupyter_serves_the_host_and_installs_from_pypi_through_the_sentry() -> Result<()> {
    let Some(ctx) = Ctx::new("runs JupyterLab through rbm-launch run")? else {
        return Ok(());
    };
    recipe_base_image(&ctx.podman, RecipeBase::Python)?;
    test_images(&ctx.podman)?; // the world's
    let world_ip = Ipv4Addr::new(10, 251, N, WORLD_HOST);
    let ca = TestCa::new("rbm jupyter world CA")?;
    let leaf = ca.leaf(&[pypi::INDEX_HOST, pypi::FILES_HOST])?;
    let port = free_port()?;
    let dir = test_recipe(&ca.cert_pem, world_ip, port)?;
    let ws = ctx.workspace(MONIKER)?;
    let recipe = dir.to_string_lossy().into_owned();
    let cleanup = Stop {
        ctx: &ctx,
        recipe: recipe.clone(),
        moniker: MONIKER,
    };
    let ws_arg = ws.to_string_lossy().into_owned();
    let build = ctx.build_args()?;
    let mut run = ctx.launcher.spawn_with_env(
        &[("RBM_BUILD_ARGS", &build)],
        &["run", "--yes", "--keep", &recipe, &ws_arg],
    )?;
    // The world joins the uplink network as soon as `run` has made it.
    let uplink = wait_for_uplink(&ctx, &mut run, MONIKER)?;
    let zone: String = [pypi::INDEX_HOST, pypi::FILES_HOST, REFUSED]
        .map(|name| format!("{name}. A 60 {world_ip}\n"))
        .concat();
    let setup = WorldSetup::new(&zone)
        .dns(SocketAddr::from((world_ip, 53)))
        .https([HttpsServer {
            addr: SocketAddr::from((world_ip, 443)),
            cert: leaf.chain_pem.clone(),
            key: leaf.key_pem.clone(),
        }]);
    let world_name = format!("rbm-{MONIKER}-world");
    let world = WorldContainer::start(&ctx.podman, &world_name, &uplink, world_ip, &setup)?;

    // Jupyter prints its address with the token (on stderr: no terminal).
    let mut token = None;
    poll(RUN_TIMEOUT, || {
        token = printed_token(&run.stderr());
        Ok(token.is_some() || !run.is_running())
    })?;
    let token = token.with_context(|| {
        format!(
            "run printed no {PRINTED}TOKEN address\nstderr: {}",
            run.stderr()
        )
    })?;
    let server = Server { port, token };
    uses_the_server(&ctx, &server, &ws, &world)
        .with_context(|| format!("Jupyter's log (run's stderr):\n{}", run.stderr()))?;

    // Shutting Jupyter down ends `run`; --keep leaves the pair.
    let (status, _) = server.request("POST", "/api/shutdown", true, None)?;
    ensure!(status == 200, "POST /api/shutdown: {status}");
    poll(Duration::from_secs(60), || Ok(!run.is_running()))
        .with_context(|| format!("run outlived Jupyter\nstderr: {}", run.stderr()))?;
    let ended = run.stop(Duration::from_secs(1))?;
    ensure!(
        ended.success(),
        "run ended with {ended}\nstderr: {}",
        run.stderr()
    );
    ensure!(
        ctx.podman.is_running(&format!("rbm-{MONIKER}-bottle"))?,
        "--keep did not keep the pair"
    );
    // The world leaves the uplink first (Podman removes no network that a
    // foreign container is on), then the pair goes.
    drop(world);
    std::mem::forget(cleanup); // the test stops the pair itself, and checks it
    let stopped = ctx.launcher.run(&["stop", &recipe], RUN_TIMEOUT)?;
    ensure!(
        stopped.success(),
        "rbm-launch stop: {}",
        stopped.stderr.trim()
    );
    let left = leftovers(&ctx.podman, MONIKER)?;
    ensure!(left.is_empty(), "left after rbm-launch stop: {left:?}");
    Ok(())
}

/// What the test proves with Jupyter up: the token guards it; a kernel
/// runs code, installs from PyPI and imports it, cannot reach a refused
/// name; a saved notebook is the host user's.
fn uses_the_server(ctx: &Ctx, server: &Server, ws: &Path, world: &WorldContainer) -> Result<()> {
    serves_with_the_token_only(server)?;
    let id = server.start_kernel()?;
    let mut kernel = Kernel::connect(server, &id)?;
    let out = kernel.execute("print(6 * 7)")?;
    ensure!(out.stdout == "42\n", "print(6 * 7) in the kernel: {out:?}");
    installs_from_pypi(&mut kernel, world)?;
    refused_from_the_kernel(&mut kernel, world)?;
    saved_notebook_is_the_users(ctx, server, ws)
}

/// The token Jupyter printed with its 127.0.0.1 address, if it has yet.
fn printed_token(output: &str) -> Option<String> {
    let at = output.find(PRINTED)? + PRINTED.len();
    let token: String = output[at..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    (!token.is_empty()).then_some(token)
}

/// The address Jupyter printed (its port the test's) opens JupyterLab; the
/// API answers the token and refuses a request without it.
fn serves_with_the_token_only(server: &Server) -> Result<()> {
    let deadline = Instant::now() + SERVER_START;
    let lab = format!("/lab?token={}", server.token);
    let (status, page) = loop {
        match server.request("GET", &lab, false, None) {
            Ok(answer) => break answer,
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("nothing on 127.0.0.1:{}", server.port)))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    ensure!(
        status == 200 && page.contains("JupyterLab"),
        "the printed address: {status}\n{page}"
    );
    let (status, _) = server.request("GET", "/api/kernels", false, None)?;
    ensure!(status == 403, "the API without the token: {status}");
    let (status, body) = server.request("GET", "/api/kernels", true, None)?;
    ensure!(status == 200, "the API with the token: {status} {body}");
    Ok(())
}

/// `%pip install` in the kernel fetches the world's package through the
/// sentry (the index from pypi.org, the wheel from files.pythonhosted.org)
/// into jovyan's ~/.local, and the running kernel imports it.
fn installs_from_pypi(kernel: &mut Kernel, world: &WorldContainer) -> Result<()> {
    let out = kernel.execute(&format!("%pip install {PACKAGE}"))?;
    let installed = format!("Successfully installed {PACKAGE}-{VERSION}");
    ensure!(
        out.stdout.contains(&installed),
        "%pip install {PACKAGE}: {out:?}"
    );
    let out = kernel.execute(&format!(
        "import {MODULE}\nprint({MODULE}.__file__)\n{MODULE}.GREETING"
    ))?;
    ensure!(
        out.result.as_deref() == Some(&format!("{GREETING:?}")) && out.error.is_none(),
        "import {MODULE} after %pip install: {out:?}"
    );
    ensure!(
        out.stdout.starts_with("/home/jovyan/.local/lib/"),
        "{MODULE} went elsewhere: {}",
        out.stdout
    );
    let requests = world.https_requests()?;
    let asked = |host: &str, path: &str| {
        requests
            .iter()
            .any(|r| r.host.split(':').next() == Some(host) && r.path == path)
    };
    ensure!(
        asked(pypi::INDEX_HOST, &format!("/simple/{PACKAGE}/"))
            && asked(
                pypi::FILES_HOST,
                &format!("/packages/{}", pypi::wheel_name())
            ),
        "the world's PyPI did not see the index and the wheel fetched: {requests:?}"
    );
    Ok(())
}

/// A request from the kernel to a name the profile does not allow fails,
/// and the world is never asked the name.
fn refused_from_the_kernel(kernel: &mut Kernel, world: &WorldContainer) -> Result<()> {
    let code = format!(
        "import urllib.request\n\
         try:\n    urllib.request.urlopen('https://{REFUSED}/', timeout=30)\n    print('reached')\n\
         except Exception as e:\n    print('failed', type(e).__name__, e)\n"
    );
    let out = kernel.execute(&code)?;
    // URLError itself, not its HTTPError: no answer came from anywhere.
    ensure!(
        out.stdout.starts_with("failed URLError "),
        "{REFUSED}: {out:?}"
    );
    ensure!(!world.was_asked(REFUSED)?, "the world was asked {REFUSED}");
    Ok(())
}

/// A notebook Jupyter saves in the workspace belongs to the host user.
fn saved_notebook_is_the_users(ctx: &Ctx, server: &Server, ws: &Path) -> Result<()> {
    let notebook = json!({
        "type": "notebook",
        "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5},
    });
    let (status, body) = server.request(
        "PUT",
        "/api/contents/proof.ipynb",
        true,
        Some(&notebook.to_string()),
    )?;
    ensure!(status == 201, "saving a notebook: {status} {body}");
    let owner = owner_of(&ws.join("proof.ipynb"))?;
    ensure!(
        owner == ctx.owner(),
        "the notebook belongs to {owner:?} on the host, not to the user {:?}",
        ctx.owner()
    );
    Ok(())
}

/// Jupyter's server at 127.0.0.1:`port` of the host, and its token.
struct Server {
    port: u16,
    token: String,
}

impl Server {
    /// One HTTP/1.0 request (the connection ends with the answer): its
    /// status and body. `auth`: with the token.
    fn request(
        &self,
        method: &str,
        path: &str,
        auth: bool,
        body: Option<&str>,
    ) -> Result<(u16, String)> {
        let mut tcp = self.connect()?;
        let mut head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n",
            self.port
        );
        if auth {
            head.push_str(&format!("Authorization: token {}\r\n", self.token));
        }
        if let Some(body) = body {
            head.push_str("Content-Type: application/json\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or(""));
        tcp.write_all(head.as_bytes())?;
        let mut answer = String::new();
        tcp.read_to_string(&mut answer)
            .with_context(|| format!("{method} {path}"))?;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{method} {path}: no HTTP status in {answer:?}"))?;
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((status, body.to_string()))
    }

    fn connect(&self) -> Result<TcpStream> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(CELL_TIMEOUT))?;
        Ok(tcp)
    }

    /// A new Python kernel's id (`POST /api/kernels`).
    fn start_kernel(&self) -> Result<String> {
        let (status, body) =
            self.request("POST", "/api/kernels", true, Some(r#"{"name":"python3"}"#))?;
        ensure!(status == 201, "POST /api/kernels: {status} {body}");
        let kernel: Value = serde_json::from_str(&body)?;
        kernel["id"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no kernel id in {body}"))
    }
}

/// What a cell gave: its output streams, its value and its error.
#[derive(Debug, Default)]
struct Executed {
    stdout: String,
    stderr: String,
    /// The value's `text/plain`.
    result: Option<String>,
    /// `ENAME: EVALUE`.
    error: Option<String>,
}

/// A kernel's channels: Jupyter's WebSocket at
/// `/api/kernels/ID/channels`, in its JSON protocol (one message a text
/// frame). A minimal client (RFC 6455): the handshake, masked frames out,
/// unmasked frames in, pings answered.
struct Kernel {
    read: BufReader<TcpStream>,
    write: TcpStream,
    session: String,
    sent: u32,
}

impl Kernel {
    fn connect(server: &Server, id: &str) -> Result<Kernel> {
        let tcp = server.connect()?;
        let session = format!("rbm-{}", nonce());
        let key = base64(&[nonce().to_le_bytes(), nonce().to_le_bytes()].concat());
        let mut write = tcp.try_clone()?;
        write.write_all(
            format!(
                "GET /api/kernels/{id}/channels?session_id={session} HTTP/1.1\r\n\
                 Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
                 Authorization: token {token}\r\n\r\n",
                port = server.port,
                token = server.token
            )
            .as_bytes(),
        )?;
        let mut read = BufReader::new(tcp);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if read.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        ensure!(
            head.starts_with("HTTP/1.1 101"),
            "the kernel's channels did not upgrade: {head}"
        );
        Ok(Kernel {
            read,
            write,
            session,
            sent: 0,
        })
    }

    /// Runs `code` in the kernel: everything it printed and gave until
    /// the kernel is idle again and has replied.
    fn execute(&mut self, code: &str) -> Result<Executed> {
        self.sent += 1;
        let msg_id = format!("{}-{}", self.session, self.sent);
        let request = json!({
            "header": {
                "msg_id": msg_id, "msg_type": "execute_request", "username": "rbm",
                "session": self.session, "version": "5.3",
            },
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {
                "code": code, "silent": false, "store_history": true,
                "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
            },
        });
        self.send(0x1, request.to_string().as_bytes())?;
        let deadline = Instant::now() + CELL_TIMEOUT;
        let mut out = Executed::default();
        let (mut idle, mut replied) = (false, false);
        while !(idle && replied) {
            ensure!(
                Instant::now() < deadline,
                "{code:?} ran past {CELL_TIMEOUT:?}: {out:?}"
            );
            let m: Value = serde_json::from_str(
                &self
                    .message()
                    .with_context(|| format!("running {code:?}, so far {out:?}"))?,
            )?;
            if m["parent_header"]["msg_id"] != msg_id.as_str() {
                continue;
            }
            let c = &m["content"];
            match m["header"]["msg_type"].as_str().unwrap_or_default() {
                "stream" if c["name"] == "stderr" => out.stderr += c["text"].as_str().unwrap_or(""),
                "stream" => out.stdout += c["text"].as_str().unwrap_or(""),
                "execute_result" => out.result = c["data"]["text/plain"].as_str().map(Into::into),
                "error" => out.error = Some(format!("{}: {}", c["ename"], c["evalue"])),
                "status" => idle = c["execution_state"] == "idle",
                "execute_reply" => replied = true,
                _ => {}
            }
        }
        Ok(out)
    }

    /// One message, its fragments joined; pings answered on the way.
    fn message(&mut self) -> Result<String> {
        let mut data = Vec::new();
        loop {
            let (fin, opcode, payload) = self.frame()?;
            match opcode {
                0x9 => self.send(0xa, &payload)?,
                0xa => {}
                0x8 => bail!(
                    "the kernel's channels closed: {}",
                    String::from_utf8_lossy(&payload)
                ),
                0x0..=0x2 => {
                    data.extend(payload);
                    if fin {
                        return Ok(String::from_utf8(data)?);
                    }
                }
                other => bail!("a frame of unknown opcode {other:#x}"),
            }
        }
    }

    /// One frame: whether it ends its message, its opcode, its payload.
    fn frame(&mut self) -> Result<(bool, u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.read.read_exact(&mut head)?;
        ensure!(head[1] & 0x80 == 0, "a server's frame is never masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                self.read.read_exact(&mut n)?;
                u64::from(u16::from_be_bytes(n))
            }
            127 => {
                let mut n = [0u8; 8];
                self.read.read_exact(&mut n)?;
                u64::from_be_bytes(n)
            }
            n => u64::from(n),
        };
        ensure!(len <= 64 << 20, "a frame of {len} bytes");
        let mut payload = vec![0u8; len as usize];
        self.read.read_exact(&mut payload)?;
        Ok((head[0] & 0x80 != 0, head[0] & 0x0f, payload))
    }

    /// Sends one frame, masked as a client must.
    fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        let mask = (nonce() as u32).to_le_bytes();
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.write.write_all(&frame)?;
        Ok(())
    }
}

/// A number unlikely to repeat (WebSocket keys and masks, session ids).
fn nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    t ^ COUNT
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A TCP port on the host's loopback that nothing listens on now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A copy of the built-in recipe with the test's profile (see the module's
/// documentation); the world's CA in a folder beside it.
fn test_recipe(ca_pem: &str, world_ip: Ipv4Addr, port: u16) -> Result<PathBuf> {
    let (dir, mut bottle, mut p) = built_in_copy("jupyter", MONIKER, N, world_ip)?;
    let ca_dir = fresh_dir(&format!("recipe-{MONIKER}-world"))?;
    let ca_file = ca_dir.join("world-ca.pem");
    std::fs::write(&ca_file, ca_pem)?;
    let mut env = toml::Table::new();
    env.insert("PIP_CERT".into(), CA_IN_BOTTLE.into());
    bottle.insert("env".into(), env.into());
    let mut volume = toml::Table::new();
    volume.insert("host".into(), ca_file.to_string_lossy().as_ref().into());
    volume.insert("bottle".into(), CA_IN_BOTTLE.into());
    volume.insert("read_only".into(), true.into());
    volume.insert("outside".into(), true.into());
    bottle.insert("volumes".into(), toml::Value::Array(vec![volume.into()]));
    let entries = match p.get_mut("entry") {
        Some(toml::Value::Array(e)) if e.len() == 1 => e,
        _ => bail!("the recipe's profile has not one [[entry]]"),
    };
    let entry = entries[0].as_table_mut().context("an entry is a table")?;
    ensure!(
        entry.get("bottle_port").and_then(toml::Value::as_integer) == Some(8888),
        "the recipe's entry is not Jupyter's port 8888: {entry:?}"
    );
    entry.insert("host_port".into(), i64::from(port).into());
    write_profile(&dir, bottle, p)?;
    Ok(dir)
}
