//! The owner ranking, peer liveness and the peer list.

use super::*;

fn cluster(me: &str, peers: &[&str]) -> Arc<Cluster> {
    let cfg = ClusterConfig {
        advertise: me.to_string(),
        peers: Peers::Static(peers.iter().map(|s| s.to_string()).collect()),
        peer_timeout: Duration::from_millis(200),
        ca_file: None,
    };
    Cluster::start(&cfg).expect("cluster")
}

#[tokio::test]
async fn replicas_agree_on_owners_and_spread_them() {
    let peers = ["http://a:1", "http://b:1", "http://c:1"];
    let views: Vec<_> = peers.iter().map(|p| cluster(p, &peers)).collect();
    let mut owned = HashMap::new();
    for i in 0..300u32 {
        let d = Digest::of(&i.to_be_bytes());
        // Each replica names the same owner (itself as None).
        let names: Vec<String> = views
            .iter()
            .zip(peers)
            .map(|(v, me)| v.owner(&d).unwrap_or_else(|| me.to_string()))
            .collect();
        assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
        *owned.entry(names[0].clone()).or_insert(0) += 1;
    }
    // Roughly a third each.
    for p in peers {
        let n = owned.get(p).copied().unwrap_or(0);
        assert!((60..=140).contains(&n), "{p} owns {n} of 300: {owned:?}");
    }
}

/// The ranking is part of the wire contract: replicas of different versions (a rolling
/// upgrade) must agree on it. Here it is recomputed from its definition, independently:
/// descending by the first 8 bytes (big-endian) of SHA-256(peer, "\n", digest), ties
/// by the peer URL.
#[tokio::test]
async fn the_ranking_follows_its_definition() {
    use sha2::Digest as _;
    let peers = [
        "http://10.0.0.1:5000",
        "http://10.0.0.2:5000",
        "http://10.0.0.3:5000",
    ];
    let view = cluster(peers[0], &peers);
    for i in 0..50u32 {
        let d = Digest::of(&i.to_be_bytes());
        let mut want: Vec<(u64, &str)> = peers
            .iter()
            .map(|p| {
                let h = sha2::Sha256::digest(format!("{p}\n{d}").as_bytes());
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[..8]);
                (u64::from_be_bytes(b), *p)
            })
            .collect();
        want.sort_by(|x, y| y.cmp(x));
        let want: Vec<&str> = want.into_iter().map(|(_, p)| p).collect();
        assert_eq!(view.ranked(&d), want, "digest {d}");
    }
}

#[tokio::test]
async fn an_unusable_ca_file_is_named_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("ca.pem");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let cfg = ClusterConfig {
        advertise: "https://a:1".into(),
        peers: Peers::Static(vec!["https://a:1".into()]),
        peer_timeout: Duration::from_secs(1),
        ca_file: Some(bad),
    };
    let e = Cluster::start(&cfg)
        .err()
        .expect("a bad ca_file is an error");
    assert!(
        e.starts_with("cluster.ca_file: ") && e.contains("ca.pem"),
        "{e}"
    );
}

#[tokio::test]
async fn a_peer_marked_down_loses_only_its_own_digests() {
    let peers = ["http://a:1", "http://b:1", "http://c:1"];
    let a = cluster(peers[0], &peers);
    let before: Vec<_> = (0..200u32)
        .map(|i| a.owner(&Digest::of(&i.to_be_bytes())))
        .collect();
    a.mark_down("http://b:1", "test");
    for (i, was) in before.iter().enumerate() {
        let now = a.owner(&Digest::of(&(i as u32).to_be_bytes()));
        assert_ne!(now.as_deref(), Some("http://b:1"));
        if was.as_deref() != Some("http://b:1") {
            // Rendezvous hashing: the others keep their digests.
            assert_eq!(&now, was);
        }
    }
    // This replica is never out of its own view.
    let alone = cluster("http://a:1", &[]);
    assert_eq!(alone.owner(&Digest::of(b"x")), None);
}

#[tokio::test]
async fn peers_dns_lists_every_address_of_the_name() {
    let cfg = ClusterConfig {
        advertise: "http://10.9.9.9:7".into(),
        peers: Peers::Dns {
            host: "localhost".into(),
            port: 7,
        },
        peer_timeout: Duration::from_millis(200),
        ca_file: None,
    };
    let c = Cluster::start(&cfg).expect("cluster");
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.members().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let members = c.members();
    assert!(
        members.contains(&"http://127.0.0.1:7".to_string()),
        "{members:?}"
    );
    assert!(members.contains(&"http://10.9.9.9:7".to_string()));
}

#[tokio::test]
async fn a_dead_peer_fails_fast() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let peer = format!("http://127.0.0.1:{port}");
    let c = cluster("http://127.0.0.1:1", &[&peer]);
    let started = Instant::now();
    let e = c
        .fetch_blob(
            &peer,
            "u",
            "r",
            &Digest::of(b"x"),
            &Credentials::Anonymous,
            Duration::from_secs(5),
        )
        .await
        .expect_err("nothing listens");
    assert!(e.unreachable && e.message.contains(&peer), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A loopback listener that answers every request with `401` (as a replica's `/v2/` does
/// for an anonymous client), and its URL.
async fn answering_peer() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let resp = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n";
                    if s.write_all(resp).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_peer_that_answers_is_alive_and_one_that_refuses_is_down() {
    let live = answering_peer().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let c = cluster("http://127.0.0.1:1", &[&live, &dead]);
    assert!(c.alive(&live).await, "a 401 is an answer");
    assert!(!c.alive(&dead).await, "nothing listens");
    // The dead peer is out of the owner choice; the live one stays in.
    let members = c.members();
    assert!(!members.contains(&dead), "{members:?}");
    assert!(members.contains(&live), "{members:?}");
}
