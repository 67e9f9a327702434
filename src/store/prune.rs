//! Pruning expired authorization decisions from the `authz` column family.
//!
//! Invariants: imported-content markers (the [`super::IMPORTED`] credential) are never
//! pruned, nor the positive decisions of the credentials the caller keeps (the anonymous one:
//! the offline rule trusts "anonymous clients could pull it" without an age limit). Deleting
//! any other record can only narrow what a client is served: no record reads as "not
//! authorized" (and falls back to the anonymous decision, as an expired record does).

use super::{keys, Store, CF_AUTHZ, IMPORTED};
use crate::error::Result;

impl Store {
    /// Deletes the authorization records checked before `cutoff_ms` (and unreadable ones),
    /// except imported-content markers and the positive decisions of `keep_allowed`
    /// credentials. Returns how many it deleted.
    pub fn prune_authz(&self, cutoff_ms: u64, keep_allowed: &[[u8; 32]]) -> Result<u64> {
        let cf = self.cf(CF_AUTHZ)?;
        let imported = self.persisted_id(&IMPORTED);
        let kept: Vec<[u8; 32]> = keep_allowed.iter().map(|c| self.persisted_id(c)).collect();
        let mut batch = rocksdb::WriteBatch::default();
        let mut n = 0u64;
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let Some(id) = k.get(..32) else {
                continue;
            };
            if id == imported.as_slice() {
                continue;
            }
            if let Some(rec) = keys::decode_authz(&v) {
                if rec.checked_at_ms >= cutoff_ms
                    || (rec.allowed && kept.iter().any(|p| p.as_slice() == id))
                {
                    continue;
                }
            }
            batch.delete_cf(cf, &k);
            n += 1;
            if batch.len() >= 10_000 {
                self.db.write(std::mem::take(&mut batch))?;
            }
        }
        self.db.write(batch)?;
        Ok(n)
    }
}
