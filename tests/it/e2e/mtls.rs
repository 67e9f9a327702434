//! Mutual TLS to the upstream (`client_cert_file`/`client_key_file` in `[[upstream]]`)
//! against a `docker-registry` that requires client certificates, and `wharf serve` refusing
//! to start with a broken `[tls]` certificate or key, naming the file.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::images;
use super::proc::{free_port, tools_present, Proc};
use super::skopeo::{assert_same, check_dir, expected, Skopeo};
use super::upstream::{issue_cert, make_certs, openssl, Upstream};
use super::wharf::Wharf;

/// A client certificate (`extendedKeyUsage=clientAuth`) signed by the test CA in `dir`
/// (made by [`make_certs`]): `client.pem` and `client-key.pem`.
pub(crate) fn make_client_cert(dir: &Path) {
    let ext = "basicConstraints=critical,CA:FALSE\n\
               keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";
    std::fs::write(dir.join("client-ext.cnf"), ext).expect("write client ext file");
    issue_cert(
        dir,
        "wharf e2e client",
        "client-key.pem",
        "client.pem",
        "client-ext.cnf",
    );
}

/// A TOML basic string.
fn quoted(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).expect("quote path")
}

#[test]
fn e2e_upstream_requiring_mutual_tls() {
    if !tools_present("e2e_upstream_requiring_mutual_tls") {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("wharf-e2e-mtls-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path();
    let certs = make_certs(dir);
    make_client_cert(dir);
    let (client_pem, client_key) = (dir.join("client.pem"), dir.join("client-key.pem"));
    let extra = format!("    clientcas:\n      - {}\n", certs.ca_pem.display());
    let upstream = Upstream::start_with(dir, &certs, &extra);

    // skopeo's cert dir for the push: the CA plus a client certificate pair.
    let mtls_dir = dir.join("mtls-certs.d");
    std::fs::create_dir_all(&mtls_dir).expect("create mtls cert dir");
    std::fs::copy(&certs.ca_pem, mtls_dir.join("ca.crt")).expect("copy ca.crt");
    std::fs::copy(&client_pem, mtls_dir.join("client.cert")).expect("copy client.cert");
    std::fs::copy(&client_key, mtls_dir.join("client.key")).expect("copy client.key");
    let mtls = mtls_dir.to_string_lossy().into_owned();

    let skopeo = Skopeo::new(dir);
    let image = images::generate(dir).swap_remove(0);
    assert!(
        !image.multi && !image.docker,
        "the first test image is a plain OCI one"
    );
    let src = format!("oci:{}:{}", image.layout.display(), image.tag);
    let dest = format!("docker://{}/{}:{}", upstream.host(), image.repo, image.tag);

    // The registry really requires a client certificate: a push with only the CA fails.
    let ca_only = certs.cert_dir.to_string_lossy().into_owned();
    let refused = skopeo.try_run(&["copy", "--dest-cert-dir", &ca_only, &src, &dest]);
    assert!(
        refused.is_err(),
        "push without a client certificate was accepted\n{}",
        upstream.proc.logs()
    );
    if let Err(e) = skopeo.try_run(&["copy", "--dest-cert-dir", &mtls, &src, &dest]) {
        panic!(
            "push with a client certificate failed: {e}\n{}",
            upstream.proc.logs()
        );
    }
    let want = expected(
        &skopeo,
        &["--cert-dir", mtls.as_str()],
        &upstream.host(),
        image.repo,
        image.tag,
    );
    assert_eq!(want.media_type, images::OCI_MANIFEST);

    // Wharf without a client certificate: its upstream handshake is refused, so is the pull.
    let plain = dir.join("wharf-no-client-cert");
    std::fs::create_dir_all(&plain).expect("create dir");
    let log_mark = std::fs::read_to_string(&upstream.proc.stderr)
        .unwrap_or_default()
        .len();
    {
        let wharf = Wharf::start_with(
            &plain,
            &upstream.url(),
            &certs.ca_pem,
            "tag_ttl = \"1s\"\n",
            &[],
        );
        let src = format!("docker://{}/{}:{}", wharf.host(), image.repo, image.tag);
        let out = plain.join("pulled");
        let dest = format!("dir:{}", out.display());
        let res = skopeo.try_run(&["copy", "--src-tls-verify=false", &src, &dest]);
        assert!(
            res.is_err(),
            "pull through Wharf without a client certificate succeeded\n{}",
            wharf.proc.logs()
        );
        let registry = std::fs::read_to_string(&upstream.proc.stderr).unwrap_or_default();
        let registry = registry.get(log_mark..).unwrap_or_default();
        assert!(
            registry.contains("TLS handshake error"),
            "the registry refused Wharf's handshake:\n{registry}\n{}",
            wharf.proc.logs()
        );
    }

    // With the client certificate: the pull succeeds and matches the upstream.
    let with_cert = dir.join("wharf-client-cert");
    std::fs::create_dir_all(&with_cert).expect("create dir");
    let keys = format!(
        "tag_ttl = \"1s\"\nclient_cert_file = {}\nclient_key_file = {}\n",
        quoted(&client_pem),
        quoted(&client_key)
    );
    let wharf = Wharf::start_with(&with_cert, &upstream.url(), &certs.ca_pem, &keys, &[]);
    let before = upstream.blob_gets();
    let src = format!("docker://{}/{}:{}", wharf.host(), image.repo, image.tag);
    let out = with_cert.join("pulled");
    let dest = format!("dir:{}", out.display());
    if let Err(e) = skopeo.try_run(&["copy", "--src-tls-verify=false", &src, &dest]) {
        panic!(
            "pull through Wharf with a client certificate failed: {e}\n{}\n{}",
            wharf.proc.logs(),
            upstream.proc.logs()
        );
    }
    assert_same(&check_dir(&out), &want, "pulled through Wharf over mTLS");
    assert!(
        upstream.blob_gets() > before,
        "the blobs came from the upstream over mutual TLS"
    );
}

/// Runs `wharf serve --config <config>` until it exits (at most 10 s); its stderr.
fn serve_fails(dir: &Path, name: &str, config: &str) -> String {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, config).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(["serve", "--config"]).arg(&file).current_dir(dir);
    let mut proc = Proc::spawn(name, cmd, dir, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = proc.exited() {
            break status;
        }
        if Instant::now() >= deadline {
            panic!(
                "wharf serve ({name}) still running after 10s\n{}",
                proc.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !status.contains("exit status: 0"),
        "wharf serve ({name}) exited successfully ({status})\n{}",
        proc.logs()
    );
    std::fs::read_to_string(&proc.stderr).unwrap_or_default()
}

#[test]
fn e2e_tls_startup_errors_name_the_file() {
    if !tools_present("e2e_tls_startup_errors_name_the_file") {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("wharf-e2e-tls-errors-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path();
    let certs = make_certs(dir);
    // A second key, not the server certificate's.
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            "other-key.pem",
        ],
    );
    let not_pem = dir.join("not-pem.crt");
    std::fs::write(&not_pem, "hello\n").expect("write not-pem");
    let config = |cert: &Path, key: &Path| {
        format!(
            "listen = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\ndata_dir = {}\n\
             [tls]\ncert_file = {}\nkey_file = {}\n\
             [[upstream]]\nname = \"registry.test\"\nurl = \"https://127.0.0.1:{}\"\n\
             default = true\nca_file = {}\n",
            free_port(),
            free_port(),
            quoted(&dir.join("wharf-data")),
            quoted(cert),
            quoted(key),
            free_port(),
            quoted(&certs.ca_pem),
        )
    };

    let err = serve_fails(dir, "not-pem", &config(&not_pem, &certs.server_key));
    let name = not_pem.display().to_string();
    assert!(err.contains(&name), "stderr names {name}:\n{err}");
    assert!(
        err.contains("not valid PEM") || err.contains("no PEM certificate"),
        "stderr says the file is not a PEM certificate:\n{err}"
    );

    let other_key = dir.join("other-key.pem");
    let err = serve_fails(dir, "wrong-key", &config(&certs.server_pem, &other_key));
    let name = other_key.display().to_string();
    assert!(err.contains(&name), "stderr names {name}:\n{err}");
    assert!(
        err.contains("does not fit the certificate"),
        "stderr says the key does not fit the certificate:\n{err}"
    );
}
