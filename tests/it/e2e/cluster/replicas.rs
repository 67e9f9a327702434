//! The cluster test itself: phases 1 to 3 of [`super`] against replicas a, b, c (and d).

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{blob_gets, cluster_metrics, World, ATTEMPTS, CLIENTS, MIB, NAMES};
use crate::e2e::garage::garage_present;
use crate::e2e::images::Rng;
use crate::e2e::proc::{free_ports, tools_present};
use crate::e2e::skopeo::{assert_same, check_dir};
use crate::e2e::wharf::Wharf;

#[test]
fn e2e_cluster_replicas_share_one_bucket() {
    let test = "e2e_cluster_replicas_share_one_bucket";
    if !tools_present(test) || !garage_present(test) {
        return;
    }
    let started = Instant::now();
    let w = World::new();
    let mut rng = Rng::from_entropy();
    let x = w.push(
        &mut rng,
        "e2e/cluster-x",
        "v1",
        &[6 * MIB, 5 * MIB, 4 * MIB],
    );
    let y = w.push(
        &mut rng,
        "e2e/cluster-y",
        "v1",
        &[8 * MIB, 6 * MIB, 4 * MIB],
    );
    eprintln!(
        "e2e cluster: registry, 3 Garage nodes, X and Y pushed in {:?}",
        started.elapsed()
    );

    // Ports of a, b, c (and their admin listeners): every config lists the peers first.
    let ports = free_ports(6);
    let (port, admin) = (|i: usize| ports[2 * i], |i: usize| ports[2 * i + 1]);
    let t = Instant::now();
    let specs: Vec<_> = (0..3).map(|i| (NAMES[i], port(i), admin(i))).collect();
    let mut replicas = w.start_replicas(&specs, &[port(0), port(1), port(2)]);
    let hosts: Vec<String> = replicas.iter().map(Wharf::host).collect();
    let down: Vec<AtomicBool> = hosts.iter().map(|_| AtomicBool::new(false)).collect();
    eprintln!("e2e cluster: replicas a, b, c up in {:?}", t.elapsed());

    // Phase 1: X cold, 16 clients over a, b, c; the upstream serves each blob once.
    let t = Instant::now();
    let mark = w.upstream.settled_requests().len();
    let reference = format!("{}:{}", x.repo, x.tag);
    let clients = w.pull_all(&hosts, &down, &reference, "x", 1, |_| {});
    w.check_clients(&clients, &x, "phase 1", &replicas);
    let reqs = w.upstream.settled_requests();
    let gets = blob_gets(&reqs[mark..], &x);
    let total: u64 = x.blobs.iter().map(|b| b.1).sum();
    let served: u64 = gets.values().map(|g| g.1).sum();
    let metrics = cluster_metrics(&replicas);
    eprintln!(
        "e2e cluster: phase 1 ({CLIENTS} cold pulls of X) took {:?}; upstream sent {served} \
         bytes for {total} bytes of blobs; GETs per blob {gets:?}\n{metrics}",
        t.elapsed()
    );
    assert!(
        served >= total,
        "phase 1: the registry log shows {served} bytes sent for X's {total}: is \
         http.response.written still logged? {gets:#?}"
    );
    assert!(
        served <= total * 105 / 100,
        "phase 1: the upstream sent {served} bytes for X's {total} bytes of blobs (over 5 % \
         more): {gets:#?}\n{metrics}\n{}",
        w.logs(&replicas)
    );
    for (digest, _) in &x.blobs[1..] {
        let n = gets.get(digest).map_or(0, |g| g.0);
        assert!(
            n <= 1,
            "phase 1: layer {digest} was fetched from the upstream {n} times: {gets:#?}\n\
             {metrics}\n{}",
            w.logs(&replicas)
        );
    }

    // Phase 2: Y cold, b killed once bytes flow; clients retry elsewhere.
    let t = Instant::now();
    let reference = format!("{}:{}", y.repo, y.tag);
    let mut kill = None;
    let clients = w.pull_all(&hosts, &down, &reference, "y", ATTEMPTS, |done| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while w.bytes_pulled("pull-y-") < 2 * MIB as u64
            && done.load(Ordering::SeqCst) < CLIENTS
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(20));
        }
        let (bytes, finished) = (w.bytes_pulled("pull-y-"), done.load(Ordering::SeqCst));
        down[1].store(true, Ordering::SeqCst);
        replicas[1].proc.kill();
        kill = Some((t.elapsed(), bytes, finished));
    });
    let (at, bytes, finished) = kill.expect("the kill ran");
    eprintln!(
        "e2e cluster: b killed after {at:?}, {} KiB at the clients, {finished}/{CLIENTS} \
         clients done",
        bytes >> 10
    );
    if finished == CLIENTS {
        eprintln!("e2e cluster: WARNING: every pull ended before the kill; nothing was cut off");
    }
    let failed = w.check_clients(&clients, &y, "phase 2", &replicas);
    eprintln!(
        "e2e cluster: phase 2 took {:?}; {} failed tries retried elsewhere{}\n{}",
        t.elapsed(),
        failed.len(),
        failed
            .iter()
            .take(3)
            .map(|e| format!("\n  {}", e.lines().last().unwrap_or_default()))
            .collect::<String>(),
        cluster_metrics(&replicas)
    );

    // Phase 3: a fresh replica d (empty data dir, same bucket) serves X and Y with no
    // upstream request at all, once a and c finished sharing what they fetched. Its ports
    // are chosen only now, never a, b or c's (b's is free).
    let t = Instant::now();
    let missing = w.wait_shared(&[&x, &y]);
    assert!(
        missing.is_empty(),
        "phase 3: blobs not in the bucket a minute after the pulls: {missing:?}\n{}\n{}",
        cluster_metrics(&replicas),
        w.logs(&replicas)
    );
    let fresh = free_ports(8).into_iter().filter(|p| !ports.contains(p));
    let d: Vec<u16> = fresh.take(2).collect();
    let peers = [port(0), port(1), port(2), d[0]];
    replicas.extend(w.start_replicas(&[(NAMES[3], d[0], d[1])], &peers));
    let d_host = replicas[3].host();
    let mark = w.upstream.settled_requests().len();
    for img in [&x, &y] {
        let by_tag = format!("{}:{}", img.repo, img.tag);
        let by_digest = format!("{}@{}", img.repo, img.want.digest);
        for (reference, how) in [(by_tag, "tag"), (by_digest, "digest")] {
            let dest = w.path(&format!("pull-d-{}-{how}", img.repo.replace('/', "-")));
            let source = format!("docker://{d_host}/{reference}");
            let dest_ref = format!("dir:{}", dest.display());
            let args = ["copy", "--src-tls-verify=false", &source, &dest_ref];
            if let Err(e) = w.skopeo.try_run(&args) {
                panic!(
                    "phase 3: {reference} from d failed: {e}\n{}",
                    w.logs(&replicas)
                );
            }
            assert_same(
                &check_dir(&dest),
                &img.want,
                &format!("phase 3, {reference} from d"),
            );
        }
    }
    let reqs = w.upstream.settled_requests();
    assert!(
        reqs[mark..].is_empty(),
        "phase 3: {} upstream requests while d served X and Y: {:#?}\n{}\n{}",
        reqs.len() - mark,
        &reqs[mark..],
        cluster_metrics(&replicas),
        w.logs(&replicas)
    );
    eprintln!(
        "e2e cluster: phase 3 (fresh replica d, 4 pulls, 0 upstream requests) took {:?}\n{}",
        t.elapsed(),
        cluster_metrics(&replicas)
    );
    eprintln!("e2e cluster: whole test took {:?}", started.elapsed());
}
