//! Tests of eviction, fsck and the start-up reconciliation.

mod eviction {
    use super::super::*;
    use std::io::Write;

    fn put(s: &Store, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        let t = s.create_temp(&d).expect("temp");
        (&*t.file).write_all(data).expect("write");
        s.commit_blob(&t, &d, data.len() as u64).expect("commit");
        d
    }

    fn set_access(s: &Store, d: &Digest, at: u64) {
        s.access.lock().expect("lock").insert(*d, at);
        s.flush_access().expect("flush");
    }

    #[test]
    fn evicts_least_recently_used_first_and_never_kept_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("store");
        let a = put(&s, &[1u8; 100]);
        let b = put(&s, &[2u8; 100]);
        let c = put(&s, &[3u8; 100]);
        let now = crate::store::now_ms() / 1000;
        set_access(&s, &a, now + 10);
        set_access(&s, &b, now + 30);
        set_access(&s, &c, now + 20);
        assert_eq!(s.blob_totals(), (300, 3));
        // Keep `a` even though it is the oldest: `c` (next oldest) goes instead.
        let keep: HashSet<Digest> = [a].into_iter().collect();
        assert_eq!(s.evict_to(200, &keep).expect("evict"), (1, 100));
        assert!(s.files().exists(&a) && s.files().exists(&b) && !s.files().exists(&c));
        assert_eq!(s.blob_totals(), (200, 2));
        assert_eq!(s.evict_to(100, &HashSet::new()).expect("evict"), (1, 100));
        assert!(!s.files().exists(&a) && s.files().exists(&b));
        assert!(s.fsck(false).expect("fsck").problems.is_empty());
    }

    #[test]
    fn fsck_finds_and_repairs_corruption_and_dangling_records() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("store");
        let a = put(&s, b"good blob");
        let b = put(&s, b"soon corrupt");
        let c = put(&s, b"soon missing");
        std::fs::write(s.files().path(&b), b"corrupted!!!").expect("corrupt");
        std::fs::remove_file(s.files().path(&c)).expect("rm");
        let r = s.fsck(false).expect("fsck");
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems.iter().any(|p| p.contains(&b.hex())));
        assert!(r.problems.iter().any(|p| p.contains(&c.hex())));
        let r = s.fsck(true).expect("repair");
        assert_eq!(r.repaired, 2);
        assert!(s.files().quarantine_dir().join(b.hex()).exists());
        assert!(s.fsck(false).expect("fsck").problems.is_empty());
        assert!(s.files().exists(&a));
    }
}

mod reconcile_tests {
    use super::super::*;
    use std::io::Write;

    #[test]
    fn start_up_drops_records_without_files_and_records_unrecorded_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let (gone, orphan) = {
            let s = Store::open(dir.path()).expect("store");
            let put = |data: &[u8]| {
                let d = Digest::of(data);
                let t = s.create_temp(&d).expect("temp");
                (&*t.file).write_all(data).expect("write");
                s.commit_blob(&t, &d, data.len() as u64).expect("commit");
                d
            };
            let gone = put(b"file removed behind our back");
            let orphan = put(b"record removed behind our back");
            std::fs::remove_file(s.files().path(&gone)).expect("rm");
            s.db.delete_cf(s.cf(CF_BLOBS).expect("cf"), orphan.as_bytes())
                .expect("delete");
            (gone, orphan)
        };
        let s = Store::open(dir.path()).expect("reopen");
        assert!(s.blob_record(&gone).expect("rec").is_none());
        assert_eq!(
            s.blob_record(&orphan).expect("rec").map(|r| r.size),
            Some(30)
        );
        assert_eq!(s.blob_totals(), (30, 1));
        assert!(s.fsck(false).expect("fsck").problems.is_empty());
    }
}
