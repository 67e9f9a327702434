//! The shared backend suite (`wharf::store::backend::suite`, which the filesystem backend
//! runs as a unit test) against the S3 backend on a real 3-node Garage cluster; and what a
//! bucket does with a wrong secret or a missing bucket: errors, never a blob.

use std::io::ErrorKind;

use super::garage::{garage_present, Garage};
use wharf::config::S3Config;
use wharf::store::backend::{suite, BlobBackend};
use wharf::store::s3::S3Store;

fn config(g: &Garage) -> S3Config {
    g.s3_config("suite/run")
}

/// A scratch dir, a Garage cluster of `nodes` in it, and a runtime for the async store.
fn world(prefix: &str, nodes: usize) -> (tempfile::TempDir, Garage, tokio::runtime::Runtime) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    let g = Garage::start(dir.path(), nodes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    (dir, g, rt)
}

#[test]
fn e2e_s3_backend_passes_the_backend_suite_on_garage() {
    if !garage_present("e2e_s3_backend_passes_the_backend_suite_on_garage") {
        return;
    }
    let (dir, g, rt) = world("wharf-s3-", 3);
    rt.block_on(async {
        let store = S3Store::new(&config(&g)).expect("s3 store");
        suite::run(&store, dir.path(), "s3").await;

        // The prefix keeps clusters apart: a store under another prefix sees nothing.
        let other = S3Store::new(&S3Config {
            prefix: "elsewhere".into(),
            ..config(&g)
        })
        .expect("s3 store");
        let data = b"prefixed blob".to_vec();
        let d = wharf::oci::Digest::of(&data);
        let path = dir.path().join("prefixed");
        std::fs::write(&path, &data).expect("write");
        store.put_file(&d, &path).await.expect("put");
        assert_eq!(other.stat(&d).await.expect("stat"), None);
        assert_eq!(store.stat(&d).await.expect("stat"), Some(data.len() as u64));

        // A pre-signed URL serves the blob to a client without credentials.
        let url = store
            .presign(&d, std::time::Duration::from_secs(60))
            .await
            .expect("presign")
            .expect("s3 presigns");
        assert_eq!(Garage::curl(&url), data);

        // A wrong secret is an error, not an absent blob.
        let wrong = S3Store::new(&S3Config {
            secret_access_key: "0".repeat(64),
            ..config(&g)
        })
        .expect("s3 store");
        let e = wrong.stat(&d).await.expect_err("wrong secret");
        assert_ne!(e.kind(), ErrorKind::NotFound, "{e}");
        let e = wrong.put_file(&d, &path).await.expect_err("wrong secret");
        assert_ne!(e.kind(), ErrorKind::InvalidData, "{e}");
    });
}

/// An `https://` endpoint signed by a private CA: trusted with `storage.ca_file`, refused
/// (an error, not a missing blob) without it.
#[test]
fn e2e_s3_backend_over_https_trusts_storage_ca_file() {
    if !garage_present("e2e_s3_backend_over_https_trusts_storage_ca_file") {
        return;
    }
    let (dir, g, rt) = world("wharf-s3-tls-", 1);
    let cert_dir = dir.path().join("certs");
    std::fs::create_dir_all(&cert_dir).expect("certs dir");
    let certs = super::upstream::make_certs(&cert_dir);
    rt.block_on(async {
        let target = ([127, 0, 0, 1], g.s3_port).into();
        let front = super::tls_front::start(&certs, target).await;
        let https = S3Config {
            endpoint: Some(format!("https://127.0.0.1:{}", front.addr.port())),
            ..config(&g)
        };
        let data = b"a blob over https".to_vec();
        let d = wharf::oci::Digest::of(&data);
        let path = dir.path().join("blob");
        std::fs::write(&path, &data).expect("write");

        // Without the CA: the handshake fails, and that is an error, never "absent".
        let untrusting = S3Store::new(&https).expect("s3 store");
        let e = untrusting
            .stat(&d)
            .await
            .expect_err("untrusted certificate");
        assert_ne!(e.kind(), ErrorKind::NotFound, "{e}");

        let store = S3Store::new(&S3Config {
            ca_file: Some(certs.ca_pem.clone()),
            ..https
        })
        .expect("s3 store");
        store.put_file(&d, &path).await.expect("put over https");
        assert_eq!(store.stat(&d).await.expect("stat"), Some(data.len() as u64));
        let (_, s) = store.open(&d).await.expect("open").expect("present");
        let got = wharf::store::backend::collect(s).await.expect("read");
        assert!(got == data, "other bytes over https");
        // The same object, seen through Garage's plain endpoint.
        let plain = S3Store::new(&config(&g)).expect("s3 store");
        assert_eq!(plain.stat(&d).await.expect("stat"), Some(data.len() as u64));
    });
}
