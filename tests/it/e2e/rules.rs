//! Repository rules against the real registry and skopeo: a denied repository fails the
//! pull with Wharf's message and costs the upstream nothing; an allowed one pulls as ever.

use super::{proc, Setup, Wharf, UPSTREAM_NAME};

#[test]
fn e2e_a_denied_repository_fails_the_pull_and_costs_no_upstream_request() {
    if !proc::tools_present("e2e_a_denied_repository_fails_the_pull_and_costs_no_upstream_request")
    {
        return;
    }
    let s = Setup::new();
    let keys = "tag_ttl = \"1s\"\nallow = [\"e2e/**\"]\ndeny = [\"e2e/multi\", \"e2e/dock*\"]\n";
    let wharf = Wharf::start_with(s.dir.path(), &s.upstream.url(), &s.certs.ca_pem, keys, &[]);
    let host = wharf.host();
    let before = s.upstream.settled_requests().len();
    let tls = ["--src-tls-verify=false"];
    for (repo, rule) in [("e2e/multi", "e2e/multi"), ("e2e/docker", "e2e/dock*")] {
        let dest = s.path(&format!("denied-{}", repo.replace('/', "-")));
        let src = format!("docker://{host}/{repo}:v1");
        let dest_ref = format!("dir:{}", dest.display());
        let mut args = vec!["copy"];
        args.extend_from_slice(&tls);
        args.extend([src.as_str(), dest_ref.as_str()]);
        let err = s
            .skopeo
            .try_run(&args)
            .expect_err("a denied repository must not pull");
        let message =
            format!("repository {repo} is refused by {UPSTREAM_NAME}'s deny rule \"{rule}\"");
        // skopeo's log line quotes the message: its quotes appear escaped.
        assert!(
            err.contains("denied: ") && err.contains(&message.replace('"', "\\\"")),
            "skopeo shows Wharf's refusal ({message}): {err}"
        );
    }
    assert_eq!(
        s.upstream.settled_requests().len(),
        before,
        "refused pulls reached the upstream: {:#?}",
        &s.upstream.settled_requests()[before..]
    );
    let no_logs = || wharf.proc.logs();
    s.pull(
        0,
        &format!("docker://{host}/e2e/app:v1"),
        &tls,
        "allowed",
        &no_logs,
    );
}
