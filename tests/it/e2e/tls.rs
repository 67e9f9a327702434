//! Wharf serving HTTPS: skopeo pulls over TLS with HTTP/2, and a certificate swapped on disk
//! is served after `SIGHUP` (without a restart).

use super::proc::{free_port, tcp_open, tools_present, wait_ready, Proc};
use super::skopeo::{assert_same, check_dir};
use super::upstream::issue_cert;
use super::Setup;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The serial number of the certificate a TLS server on `port` presents.
fn served_serial(port: u16, ca: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -CAfile {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
            ca.display()
        ))
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn file_serial(dir: &Path, cert: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in", cert])
        .current_dir(dir)
        .output()
        .expect("openssl x509");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn e2e_tls_h2_pull_and_certificate_reload_on_sighup() {
    if !tools_present("e2e_tls_h2_pull_and_certificate_reload_on_sighup") {
        return;
    }
    let s = Setup::new();
    let dir = s.dir.path();
    // Wharf's own certificate files: a copy of the upstream's (same CA, IP 127.0.0.1).
    let (crt, key) = (dir.join("wharf.crt"), dir.join("wharf.key"));
    std::fs::copy(&s.certs.server_pem, &crt).expect("copy cert");
    std::fs::copy(&s.certs.server_key, &key).expect("copy key");
    let port = free_port();
    let admin = free_port();
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\ndata_dir = \"{}\"\n\
         [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         [[upstream]]\nname = \"registry.test\"\nurl = \"{}\"\ndefault = true\nca_file = \"{}\"\n",
        dir.join("wharf-data").display(),
        crt.display(),
        key.display(),
        s.upstream.url(),
        s.certs.ca_pem.display()
    );
    let cfg = dir.join("wharf-tls.toml");
    std::fs::write(&cfg, config).expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(["serve", "--config"]).arg(&cfg).current_dir(dir);
    let mut wharf = Proc::spawn("wharf", cmd, dir, Duration::from_secs(3));
    wait_ready(
        &mut wharf,
        "wharf serve (TLS)",
        Duration::from_secs(30),
        || tcp_open(port),
    );

    // skopeo over TLS, trusting the CA (containers/image speaks HTTP/1.1 even over TLS).
    let cert_dir = s.certs.cert_dir.to_string_lossy().into_owned();
    let out = dir.join("pulled-tls");
    let src = format!(
        "docker://127.0.0.1:{port}/{}:{}",
        s.images[0].repo, s.images[0].tag
    );
    let dest = format!("dir:{}", out.display());
    if let Err(e) = s
        .skopeo
        .try_run(&["copy", "--src-cert-dir", &cert_dir, &src, &dest])
    {
        panic!("pull over TLS failed: {e}\n{}", wharf.logs());
    }
    assert_same(&check_dir(&out), &s.expected[0], "pulled over TLS");
    // HTTP/2 by ALPN: curl asks for h2 and gets it.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "--cacert",
        ])
        .arg(&s.certs.ca_pem)
        .arg(format!("https://127.0.0.1:{port}/v2/"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = wharf.logs();
    assert!(
        logs.contains("HTTP/2.0"),
        "a request arrived over HTTP/2:\n{logs}"
    );

    // Swap the certificate for a new one from the same CA, then SIGHUP.
    let before = served_serial(port, &s.certs.ca_pem);
    assert_eq!(before, file_serial(dir, "wharf.crt"));
    issue_cert(dir, "127.0.0.1", "new.key", "new.crt", "server-ext.cnf");
    std::fs::copy(dir.join("new.crt"), &crt).expect("swap cert");
    std::fs::copy(dir.join("new.key"), &key).expect("swap key");
    let want = file_serial(dir, "new.crt");
    assert_ne!(want, before);
    let pid = wharf.pid().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served = served_serial(port, &s.certs.ca_pem);
    while served != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        served = served_serial(port, &s.certs.ca_pem);
    }
    assert_eq!(
        served,
        want,
        "the new certificate is served after SIGHUP\n{}",
        wharf.logs()
    );
    assert!(wharf.exited().is_none(), "wharf kept running");
    // And pulls still work with it.
    let out2 = dir.join("pulled-tls-2");
    let dest2 = format!("dir:{}", out2.display());
    s.skopeo
        .run(&["copy", "--src-cert-dir", &cert_dir, &src, &dest2]);
    assert_same(&check_dir(&out2), &s.expected[0], "pulled after reload");
}
