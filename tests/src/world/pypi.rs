//! A stand-in for PyPI, enough for `pip install` (and a notebook's
//! `%pip install`) of one tiny pure-Python package: pypi.org's simple
//! index (PEP 503) lists [`PACKAGE`], whose wheel files.pythonhosted.org
//! serves, as the real ones split the work. The wheel is made here, in
//! memory: a zip of a module that holds [`GREETING`] and the metadata pip
//! reads.
//!
//! No I/O here: [`page`] answers a request's host and path; `https`
//! serves it.

use sha2::{Digest, Sha256};

use super::gzip::gzip;

/// The index's name.
pub const INDEX_HOST: &str = "pypi.org";
/// Where the index says the files are.
pub const FILES_HOST: &str = "files.pythonhosted.org";
/// The one project the index knows (its name as PEP 503 normalises it).
pub const PACKAGE: &str = "rbm-hello";
/// The module it installs.
pub const MODULE: &str = "rbm_hello";
/// Its version.
pub const VERSION: &str = "1.0";
/// What `rbm_hello.GREETING` holds, for the tests to look for.
pub const GREETING: &str = "hello from the rbm world's PyPI";

/// An answer: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Page {
    fn not_found() -> Page {
        Page {
            status: 404,
            content_type: "text/plain",
            body: b"404 Not Found\n".to_vec(),
        }
    }
}

/// The wheel's file name (its tags: any Python 3, any platform).
pub fn wheel_name() -> String {
    format!("{MODULE}-{VERSION}-py3-none-any.whl")
}

/// What the stand-in answers a request for `path` on `host` (the Host
/// header or the URI's authority, a port allowed), if it is PyPI's: the
/// index's `/simple/...` pages on pypi.org, the files' `/packages/...` on
/// files.pythonhosted.org (each gets 404 for what it does not hold).
/// None: the request is not for PyPI.
pub fn page(host: &str, path: &str) -> Option<Page> {
    let host = host.split(':').next().unwrap_or(host);
    if host.eq_ignore_ascii_case(INDEX_HOST) && path.starts_with("/simple/") {
        let name = path.trim_start_matches("/simple/").trim_end_matches('/');
        if normalise(name) != PACKAGE {
            return Some(Page::not_found());
        }
        return Some(Page {
            status: 200,
            content_type: "text/html",
            body: index().into_bytes(),
        });
    }
    if host.eq_ignore_ascii_case(FILES_HOST) && path.starts_with("/packages/") {
        if path != format!("/packages/{}", wheel_name()) {
            return Some(Page::not_found());
        }
        return Some(Page {
            status: 200,
            content_type: "application/octet-stream",
            body: wheel(),
        });
    }
    None
}

/// A project name as PEP 503 compares it: lowercase, runs of `-`, `_`
/// and `.` as one `-`.
fn normalise(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The project's simple page: one link to the wheel on the files host,
/// with its sha256, which pip checks.
fn index() -> String {
    let hash: String = Sha256::digest(wheel())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file = wheel_name();
    format!(
        "<!DOCTYPE html>\n<html><head><title>Links for {PACKAGE}</title></head><body>\n\
         <h1>Links for {PACKAGE}</h1>\n\
         <a href=\"https://{FILES_HOST}/packages/{file}#sha256={hash}\" data-requires-python=\"&gt;=3.8\">{file}</a><br/>\n\
         </body></html>\n"
    )
}

/// The wheel: the module, and the dist-info pip reads (METADATA, WHEEL,
/// RECORD with every other file's hash and size).
pub fn wheel() -> Vec<u8> {
    let info = format!("{MODULE}-{VERSION}.dist-info");
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            format!("{MODULE}/__init__.py"),
            format!("\"\"\"rbm's test package.\"\"\"\n\nGREETING = {GREETING:?}\n").into_bytes(),
        ),
        (
            format!("{info}/METADATA"),
            format!(
                "Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n\
                 Summary: rbm's test package, from its world's PyPI\n"
            )
            .into_bytes(),
        ),
        (
            format!("{info}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: rbm-world\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    let mut record = String::new();
    for (name, bytes) in &files {
        let hash = crate::encode::base64(&Sha256::digest(bytes))
            .replace('+', "-")
            .replace('/', "_")
            .replace('=', "");
        record.push_str(&format!("{name},sha256={hash},{}\n", bytes.len()));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    files.push((format!("{info}/RECORD"), record.into_bytes()));
    zip(&files)
}

/// A zip archive of `files` (name, bytes), each deflated (APPNOTE 6.3.x,
/// no zip64: small files only).
fn zip(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    // 1980-01-01 00:00, the earliest time a zip holds: the same bytes
    // every time.
    const TIME: u16 = 0;
    const DATE: u16 = 1 << 5 | 1;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, bytes) in files {
        // gzip's stream is a DEFLATE stream between a 10-byte header and
        // a trailer of the CRC-32 and size that zip wants too.
        let z = gzip(bytes);
        let (deflated, trailer) = z[10..].split_at(z.len() - 18);
        let crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
        let offset = out.len() as u32;
        let fields = |h: &mut Vec<u8>| {
            h.extend(20u16.to_le_bytes()); // version needed: 2.0 (deflate)
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(8u16.to_le_bytes()); // method: deflate
            h.extend(TIME.to_le_bytes());
            h.extend(DATE.to_le_bytes());
            h.extend(crc.to_le_bytes());
            h.extend((deflated.len() as u32).to_le_bytes());
            h.extend((bytes.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra field length
        };
        out.extend(0x0403_4b50u32.to_le_bytes());
        fields(&mut out);
        out.extend(name.as_bytes());
        out.extend(deflated);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // made by: 2.0
        fields(&mut central);
        central.extend(0u16.to_le_bytes()); // comment length
        central.extend(0u16.to_le_bytes()); // disk
        central.extend(0u16.to_le_bytes()); // internal attributes
        central.extend(0u32.to_le_bytes()); // external attributes
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let (at, size) = (out.len() as u32, central.len() as u32);
    out.extend(central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend(0u16.to_le_bytes()); // this disk
    out.extend(0u16.to_le_bytes()); // the central directory's disk
    out.extend((files.len() as u16).to_le_bytes());
    out.extend((files.len() as u16).to_le_bytes());
    out.extend(size.to_le_bytes());
    out.extend(at.to_le_bytes());
    out.extend(0u16.to_le_bytes()); // comment length
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_links_the_wheel_on_the_files_host_with_its_hash() {
        for path in [
            "/simple/rbm-hello/",
            "/simple/RBM_Hello/",
            "/simple/rbm.hello",
        ] {
            let page = page("pypi.org:443", path).expect("PyPI's");
            assert_eq!(page.status, 200, "{path}");
            let html = String::from_utf8(page.body).unwrap();
            let hash: String = Sha256::digest(wheel())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let href = format!(
                "https://files.pythonhosted.org/packages/rbm_hello-1.0-py3-none-any.whl#sha256={hash}"
            );
            assert!(html.contains(&href), "{html}");
        }
        assert_eq!(page("pypi.org", "/simple/requests/").unwrap().status, 404);
    }

    #[test]
    fn the_files_host_serves_the_wheel_and_other_paths_are_not_pypis() {
        let page_of = |host, path| page(host, path).map(|p| (p.status, p.body));
        let wheel_path = "/packages/rbm_hello-1.0-py3-none-any.whl";
        assert_eq!(
            page_of("files.pythonhosted.org", wheel_path),
            Some((200, wheel()))
        );
        assert_eq!(
            page_of("files.pythonhosted.org", "/packages/x.whl").map(|p| p.0),
            Some(404)
        );
        assert_eq!(page_of("pypi.org", wheel_path), None);
        assert_eq!(page_of("api.anthropic.com", "/simple/rbm-hello/"), None);
        assert_eq!(page_of("pypi.org", "/stream"), None);
    }

    /// The entries of a zip, read back by its central directory: name,
    /// method, CRC, sizes, and the local header's name and data agree.
    fn entries(zip: &[u8]) -> Vec<(String, Vec<u8>, u32)> {
        let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
        let u32_at = |i: usize| u32::from_le_bytes(zip[i..i + 4].try_into().unwrap());
        let end = zip.len() - 22;
        assert_eq!(u32_at(end), 0x0605_4b50);
        let (count, mut at) = (u16_at(end + 10), u32_at(end + 16) as usize);
        let mut out = Vec::new();
        for _ in 0..count {
            assert_eq!(u32_at(at), 0x0201_4b50);
            assert_eq!(u16_at(at + 10), 8);
            let (crc, csize) = (u32_at(at + 16), u32_at(at + 20) as usize);
            let name_len = u16_at(at + 28);
            let local = u32_at(at + 42) as usize;
            let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).unwrap();
            assert_eq!(u32_at(local), 0x0403_4b50);
            assert_eq!(&zip[local + 30..local + 30 + name_len], name.as_bytes());
            let data = zip[local + 30 + name_len..local + 30 + name_len + csize].to_vec();
            out.push((name, data, crc));
            at += 46 + name_len;
        }
        out
    }

    #[test]
    fn the_wheel_holds_the_module_and_a_record_of_every_file() {
        let wheel = wheel();
        let names: Vec<String> = entries(&wheel).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "rbm_hello/__init__.py",
                "rbm_hello-1.0.dist-info/METADATA",
                "rbm_hello-1.0.dist-info/WHEEL",
                "rbm_hello-1.0.dist-info/RECORD",
            ]
        );
        // The same bytes every time: the index's hash stays true.
        assert_eq!(super::wheel(), wheel);
        assert!(wheel.len() < 2048, "{} bytes", wheel.len());
    }

    #[test]
    fn each_entry_is_the_deflate_stream_and_crc_of_its_file() {
        let module = format!("\"\"\"rbm's test package.\"\"\"\n\nGREETING = {GREETING:?}\n");
        let z = gzip(module.as_bytes());
        let (_, data, crc) = entries(&wheel()).remove(0);
        assert_eq!(data, z[10..z.len() - 8]);
        assert_eq!(crc.to_le_bytes(), z[z.len() - 8..z.len() - 4]);
    }
}
