//! The upstream: CNCF Distribution (`docker-registry`) over HTTPS with a test CA, and the
//! parser of its request log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::proc::{free_port, settled, tcp_open, wait_ready, Proc};

/// Files made by [`make_certs`].
pub struct Certs {
    /// The CA certificate (PEM), also copied to `cert_dir/ca.crt` for skopeo.
    pub ca_pem: PathBuf,
    pub server_pem: PathBuf,
    pub server_key: PathBuf,
    /// A directory holding only `ca.crt`: skopeo's `--*-cert-dir`.
    pub cert_dir: PathBuf,
}

/// Runs `openssl <args>` in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new P-256 key `key_out` and a certificate `cert_out` for subject `cn`, signed by the
/// test CA in `dir` (`ca.pem`, `ca-key.pem`) with the extensions of `ext_file`.
pub fn issue_cert(dir: &Path, cn: &str, key_out: &str, cert_out: &str, ext_file: &str) {
    let csr = format!("{cert_out}.csr");
    let subj = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req",
            "-subj",
            &subj,
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key_out,
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "7",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-extfile",
            ext_file,
            "-out",
            cert_out,
        ],
    );
}

/// A CA and a server certificate for `IP:127.0.0.1` signed by it, in `dir`.
pub fn make_certs(dir: &Path) -> Certs {
    let ext = "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
               keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("server-ext.cnf"), ext).expect("write ext file");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "7",
        "-subj",
        "/CN=Wharf e2e test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca-key.pem", "-out", "ca.pem"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &ca);
    issue_cert(
        dir,
        "127.0.0.1",
        "server-key.pem",
        "server.pem",
        "server-ext.cnf",
    );
    let cert_dir = dir.join("certs.d");
    std::fs::create_dir_all(&cert_dir).expect("create cert dir");
    std::fs::copy(dir.join("ca.pem"), cert_dir.join("ca.crt")).expect("copy ca.crt");
    Certs {
        ca_pem: dir.join("ca.pem"),
        server_pem: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        cert_dir,
    }
}

/// One request as Distribution logged it ("response completed" lines on stderr).
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub method: String,
    pub uri: String,
    pub status: String,
    /// Bytes of response body sent (`http.response.written`; what a client cut off short
    /// received is logged too, as far as it got).
    pub written: u64,
}

impl Logged {
    /// `GET /v2/<name>/blobs/sha256:<hex>` (not uploads, not HEAD).
    pub fn is_blob_get(&self) -> bool {
        self.method == "GET" && blob_digest(&self.uri).is_some()
    }

    /// The digest of a request for `/v2/<name>/blobs/sha256:<hex>`, if it is one.
    pub fn blob(&self) -> Option<&str> {
        blob_digest(&self.uri)
    }

    /// Any request for `/v2/<name>/manifests/<reference>`.
    pub fn is_manifest(&self) -> bool {
        let path = self.uri.split('?').next().unwrap_or_default();
        let parts = path
            .strip_prefix("/v2/")
            .and_then(|p| p.rsplit_once("/manifests/"));
        parts.is_some_and(|(name, reference)| !name.is_empty() && !reference.is_empty())
    }
}

/// The digest in a `/v2/<name>/blobs/sha256:<64 hex>` path, if it is one.
fn blob_digest(uri: &str) -> Option<&str> {
    let path = uri.split('?').next()?;
    let (name, digest) = path.strip_prefix("/v2/")?.rsplit_once("/blobs/")?;
    let hex = digest.strip_prefix("sha256:")?;
    let ok = !name.is_empty() && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then_some(digest)
}

/// Splits a logrus text line into `key=value` pairs (values bare or Go-quoted).
fn logfmt(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().to_string();
        let after = &rest[eq + 1..];
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((key, value));
        rest = tail.trim_start();
    }
    out
}

/// Every completed request in a Distribution stderr log.
pub fn parse_log(text: &str) -> Vec<Logged> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields = logfmt(line);
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let msg = get("msg").unwrap_or_default();
        if msg != "response completed" && msg != "response completed with error" {
            continue;
        }
        if let (Some(method), Some(uri)) = (get("http.request.method"), get("http.request.uri")) {
            let status = get("http.response.status").unwrap_or_default();
            let written = get("http.response.written").unwrap_or_default();
            out.push(Logged {
                method,
                uri,
                status,
                written: written.parse().unwrap_or(0),
            });
        }
    }
    out
}

/// A running `docker-registry` serving HTTPS on 127.0.0.1.
pub struct Upstream {
    pub port: u16,
    pub proc: Proc,
}

impl Upstream {
    pub fn start(dir: &Path, certs: &Certs) -> Upstream {
        Upstream::start_with(dir, certs, "")
    }

    /// Like [`Upstream::start`], with `extra` (top-level YAML sections such as `auth:`)
    /// appended to the configuration.
    pub fn start_with(dir: &Path, certs: &Certs, extra: &str) -> Upstream {
        let port = free_port();
        let storage = dir.join("registry-storage");
        std::fs::create_dir_all(&storage).expect("create registry storage");
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: e2e-not-secret\n  tls:\n    certificate: {cert}\n    key: {key}\n",
            storage = storage.display(),
            cert = certs.server_pem.display(),
            key = certs.server_key.display(),
        ) + extra;
        let config_file = dir.join("registry.yml");
        std::fs::write(&config_file, config).expect("write registry config");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config_file)
            .env_clear()
            .env("HOME", dir);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let mut proc = Proc::spawn("registry", cmd, dir, Duration::ZERO);
        wait_ready(
            &mut proc,
            "docker-registry",
            Duration::from_secs(20),
            || tcp_open(port),
        );
        Upstream { port, proc }
    }

    /// `127.0.0.1:<port>`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.host())
    }

    /// Every request the registry has logged so far.
    pub fn requests(&self) -> Vec<Logged> {
        parse_log(&std::fs::read_to_string(&self.proc.stderr).unwrap_or_default())
    }

    /// The requests, once the log has stopped growing (a line is written just after the
    /// response, and a client may have exited first).
    pub fn settled_requests(&self) -> Vec<Logged> {
        settled(Duration::from_millis(400), Duration::from_secs(10), || {
            self.requests()
        })
    }

    /// Blob GETs logged so far, after the log settles.
    pub fn blob_gets(&self) -> usize {
        self.settled_requests()
            .iter()
            .filter(|r| r.is_blob_get())
            .count()
    }

    /// Kills the registry (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

#[test]
fn parses_distribution_log_lines() {
    let log = r#"time="2026-01-01T00:00:00Z" level=info msg="response completed" go.version=go1.19.8 http.request.host="127.0.0.1:1" http.request.id=x http.request.method=GET http.request.remoteaddr="127.0.0.1:2" http.request.uri="/v2/e2e/app/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" http.request.useragent="a \"b\" c" http.response.status=200 http.response.written=8385534
time="2026-01-01T00:00:00Z" level=error msg="response completed with error" err.code="blob unknown" http.request.method=HEAD http.request.uri="/v2/e2e/app/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" http.response.status=404
time="2026-01-01T00:00:00Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/ http.response.status=200
time="2026-01-01T00:00:00Z" level=info msg="response completed" http.request.method=GET http.request.uri="/v2/e2e/app/blobs/uploads/abc?_state=x" http.response.status=204
time="2026-01-01T00:00:00Z" level=info msg="response completed" http.request.method=HEAD http.request.uri="/v2/e2e/app/manifests/v1" http.response.status=200
time="2026-01-01T00:00:00Z" level=info msg="authorized request" http.request.method=GET http.request.uri="/v2/e2e/app/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef""#;
    let reqs = parse_log(log);
    assert_eq!(reqs.len(), 5);
    assert_eq!(reqs.iter().filter(|r| r.is_blob_get()).count(), 1);
    assert_eq!(reqs[0].status, "200");
    assert_eq!(reqs[0].written, 8385534);
    assert_eq!(
        reqs[0].blob(),
        Some("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    );
    assert_eq!(reqs[1].written, 0);
    assert_eq!(reqs[1].method, "HEAD");
    assert!(!reqs[1].is_blob_get());
    assert_eq!(reqs.iter().filter(|r| r.is_manifest()).count(), 1);
}
