use crate::config::{Config, Peers, StorageConfig};

const UP: &str = "[[upstream]]\nname = \"u\"\nurl = \"https://u.test\"\ndefault = true\n";

fn errors(toml: &str) -> String {
    match Config::from_toml_str(&format!("{UP}{toml}")) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn s3_storage_and_static_peers_parse() {
    let c = Config::from_toml_str(&format!(
        "{UP}[storage]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:3900\"\n\
         region = \"garage\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\npath_style = true\n\
         prefix = \"/team/wharf/\"\n\
         [cluster]\nadvertise = \"http://127.0.0.1:5001\"\n\
         peers = [\"http://127.0.0.1:5001\", \"http://127.0.0.1:5002/\"]\n"
    ))
    .expect("valid");
    let StorageConfig::S3(s) = &c.storage else {
        panic!("not s3: {:?}", c.storage)
    };
    assert_eq!(s.bucket, "b");
    assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
    assert_eq!(s.prefix, "team/wharf");
    assert!(s.path_style && !s.redirect);
    assert!(!format!("{s:?}").contains("\"s\""), "secret in Debug");
    let cl = c.cluster.expect("cluster");
    assert_eq!(cl.advertise, "http://127.0.0.1:5001");
    assert_eq!(
        cl.peers,
        Peers::Static(vec![
            "http://127.0.0.1:5001".into(),
            "http://127.0.0.1:5002".into()
        ])
    );
}

#[test]
fn bad_storage_and_cluster_keys_are_named() {
    let e = errors("[storage]\nbackend = \"s4\"\n");
    assert!(e.contains("storage.backend") && e.contains("s4"), "{e}");
    let e =
        errors("[storage]\nbackend = \"s3\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n");
    assert!(e.contains("storage.bucket: required"), "{e}");
    let e = errors("[storage]\nbucket = \"b\"\n");
    assert!(e.contains("storage.backend") && e.contains("bucket"), "{e}");
    let e = errors("[cluster]\nadvertise = \"ftp://x:1\"\npeers = [\"http://a:1/path\"]\n");
    assert!(e.contains("cluster.advertise"), "{e}");
    assert!(e.contains("cluster.peers[0]") && e.contains("path"), "{e}");
    let e = errors("[cluster]\nadvertise = \"http://a:1\"\npeers = []\npeers_dns = \"x:1\"\n");
    assert!(e.contains("cluster.peers_dns: set either"), "{e}");
    let e = errors("[cluster]\nadvertise = \"http://a:1\"\npeers_dns = \"nohost\"\n");
    assert!(
        e.contains("cluster.peers_dns") && e.contains("host:port"),
        "{e}"
    );
    let e = errors("[cluster]\nadvertise = \"http://a:1\"\npeers_dns = \"svc:5000\"\nbogus = 1\n");
    assert!(e.contains("cluster.bogus: unknown key"), "{e}");
}

#[test]
fn ca_files_must_hold_pem_certificates() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("missing.pem");
    let e = errors(&format!(
        "[cluster]\nadvertise = \"https://a:1\"\npeers = [\"https://a:1\"]\nca_file = {missing:?}\n"
    ));
    assert!(
        e.contains("cluster.ca_file") && e.contains("missing.pem"),
        "{e}"
    );
    let not_pem = dir.path().join("ca.txt");
    std::fs::write(&not_pem, "hello").expect("write");
    let s3 = "[storage]\nbackend = \"s3\"\nbucket = \"b\"\naccess_key_id = \"k\"\n\
              secret_access_key = \"s\"\nendpoint = \"https://s3.internal:443\"\n";
    let e = errors(&format!("{s3}ca_file = {not_pem:?}\n"));
    assert!(
        e.contains("storage.ca_file") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = errors(&format!("[storage]\nca_file = {not_pem:?}\n"));
    assert!(
        e.contains("storage.backend") && e.contains("ca_file"),
        "{e}"
    );
    let pem = dir.path().join("ca.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let c = Config::from_toml_str(&format!("{UP}{s3}ca_file = {pem:?}\n")).expect("valid");
    let StorageConfig::S3(s) = &c.storage else {
        panic!("not s3")
    };
    assert_eq!(s.ca_file.as_deref(), Some(pem.as_path()));
}
