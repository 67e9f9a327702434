//! Keys naming PEM certificate files (`ca_file`, `client_cert_file`): the file must be
//! readable and hold at least one certificate. Shared by the upstream, storage and cluster
//! validators.

use std::path::{Path, PathBuf};

use super::raw;
use super::Problems;

/// An optional `ca_file` key: the path, checked with [`check_ca_file`].
pub(super) fn ca_file(p: &mut Problems, key: &str, v: Option<&toml::Value>) -> Option<PathBuf> {
    let path = PathBuf::from(raw::string(p, key, v)?);
    check_ca_file(p, key, &path);
    Some(path)
}

/// Checks that `path` is a readable file holding at least one PEM certificate.
pub(super) fn check_ca_file(p: &mut Problems, key: &str, path: &Path) {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) => return p.push(key, format!("cannot read {shown}: {e}")),
        Ok(m) if !m.is_file() => return p.push(key, format!("{shown} is not a file")),
        Ok(_) => {}
    }
    match std::fs::read(path) {
        Err(e) => p.push(key, format!("cannot read {shown}: {e}")),
        Ok(bytes) => {
            if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
                p.push(key, format!("{shown} contains no PEM certificate"));
            }
        }
    }
}
