//! `wharf ls` and `wharf du` on a stopped Wharf's cache.

use crate::support::{self, data, digest_of, get, Fake};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_and_du_report_the_cached_images_and_their_bytes() {
    let fake = Fake::start().await;
    let layers = [data(40_000, 60), data(25_000, 61)];
    let (md, _) = fake.put_image("org/app", "v1", &[&layers[0], &layers[1]]);
    let dir = tempfile::tempdir().expect("tmp");
    let w = support::wharf(dir.path(), "up.test", &fake.url(), "").await;
    let base = format!("http://{}/v2/org/app", w.addr);
    let m = get(&format!("{base}/manifests/v1")).await;
    let v: serde_json::Value = serde_json::from_slice(m.bytes()).expect("manifest json");
    let config = v["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string();
    let config_len = v["config"]["size"].as_u64().expect("config size");
    for d in [config.clone(), digest_of(&layers[0]), digest_of(&layers[1])] {
        assert_eq!(get(&format!("{base}/blobs/{d}")).await.status, 200);
    }
    w.shutdown().await;

    let cfg = dir.path().join("wharf.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[[upstream]]\nname = \"up.test\"\nurl = \"{}\"\n",
            dir.path().display(),
            fake.url()
        ),
    )
    .expect("config");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .expect("wharf");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    };
    let total = (layers[0].len() + layers[1].len()) as u64 + config_len;
    let ls: serde_json::Value = serde_json::from_str(&run(&["ls", "--json"])).expect("ls json");
    assert_eq!(ls.as_array().map(Vec::len), Some(1), "{ls}");
    assert_eq!(ls[0]["upstream"], "up.test");
    assert_eq!(ls[0]["repository"], "org/app");
    assert_eq!(ls[0]["tag"], "v1");
    assert_eq!(ls[0]["digest"], md.as_str());
    assert_eq!(ls[0]["cached_bytes"], total);
    let table = run(&["ls"]);
    assert!(
        table.contains(&format!("up.test/org/app:v1\t{md}\t{total}")),
        "{table}"
    );
    let du: serde_json::Value = serde_json::from_str(&run(&["du", "--json"])).expect("du json");
    assert_eq!(du[0]["repository"], "org/app");
    assert_eq!(du[0]["blobs"], 3);
    assert_eq!(du[0]["bytes"], total);
}
