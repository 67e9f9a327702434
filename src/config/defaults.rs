//! The built-in configuration and the documented example.

/// Used when no config file is given; its `[[upstream]]` list is also the one used
/// when a config file has no `[[upstream]]` at all.
pub const EMBEDDED_DEFAULT: &str = r#"
listen = "0.0.0.0:5000"
data_dir = "./wharf-data"

[[upstream]]
name = "docker.io"
url = "https://registry-1.docker.io"
default = true
aliases = ["registry-1.docker.io", "index.docker.io"]

[[upstream]]
name = "ghcr.io"
url = "https://ghcr.io"

[[upstream]]
name = "quay.io"
url = "https://quay.io"

[[upstream]]
name = "registry.k8s.io"
url = "https://registry.k8s.io"

[[upstream]]
name = "gcr.io"
url = "https://gcr.io"

[[upstream]]
name = "mcr.microsoft.com"
url = "https://mcr.microsoft.com"

[[upstream]]
name = "public.ecr.aws"
url = "https://public.ecr.aws"
"#;

/// A fully commented example configuration (`wharf` can print it).
pub const EXAMPLE: &str = r#"# Wharf configuration (TOML).
#
# Every key is optional unless marked "required"; the value shown is the default.
# Unknown keys are errors. All problems in the file are reported at once.

# Address and port the registry API listens on.
listen = "0.0.0.0:5000"

# Client connections open at once on the registry listener; further clients wait in the
# kernel's accept queue until one closes. Bounds what idle or hostile clients can hold.
max_connections = 10000
# Connections open at once from one client address (an IPv4 address, an IPv6 /64); more are
# closed as soon as they are accepted, so that one host cannot take every slot. Behind a
# reverse proxy or load balancer every client has the proxy's address: raise it to
# max_connections there.
max_connections_per_ip = 256
# How long a client connection may take to send a complete request head, the first one
# included (HTTP/1.1 and HTTP/2 alike); slower connections are closed (slowloris).
header_read_timeout = "30s"
# A connection with no request in flight for this long (HTTP/1.1 keep-alive, HTTP/2 with no
# open stream) is closed gracefully. HTTP/1.1 connections also go after header_read_timeout.
idle_timeout = "60s"
# Longest wait for the next chunk of a request body (token forms, manifest and blob pushes);
# a request whose body stalls is answered 408 and its connection closed. A token form must
# arrive whole within this time.
request_body_timeout = "30s"
# HTTP/2: a PING goes out after this long without a frame from the client, and a client that
# does not answer within http2_keepalive_timeout is disconnected (dead peers, and clients
# that keep a stream open without reading).
http2_keepalive_interval = "30s"
http2_keepalive_timeout = "20s"

# Address and port of the admin listener: /metrics (Prometheus), /healthz, /readyz.
admin_listen = "0.0.0.0:5001"
# Connections open at once on the admin listener (more wait to be accepted); it has the
# timeouts above.
admin_max_connections = 64

# Directory holding the metadata database and the cached blobs.
data_dir = "./wharf-data"

# Never contact any upstream; serve only what is cached (an air-gapped site). Also
# `wharf serve --offline`. Cached content is then served under the offline rule of [auth].
offline = false

# HTTPS on the registry listener (HTTP/2 and HTTP/1.1 by ALPN). PEM files; `kill -HUP`
# re-reads them without dropping connections. Without [tls], plain HTTP (h1 and h2c).
# [tls]
# cert_file = "/etc/wharf/tls.crt"
# key_file = "/etc/wharf/tls.key"

# Several replicas sharing one S3-compatible bucket (AWS S3, Garage, MinIO, Ceph RGW): every
# verified blob, manifest, tag resolution and repository link also goes to the bucket, and
# data_dir becomes a local cache of it that can be lost. Without [storage], everything is in
# data_dir only (backend = "filesystem").
# [storage]
# backend = "s3"
# bucket = "wharf"                        # required with s3
# endpoint = "http://garage.internal:3900" # leave out for AWS S3
# region = "us-east-1"
# access_key_id = "GK..."                 # or AWS_ACCESS_KEY_ID
# secret_access_key = "..."               # or AWS_SECRET_ACCESS_KEY, or secret_access_key_file
# path_style = false                      # true for Garage and MinIO
# prefix = ""                             # key prefix: several clusters in one bucket
# redirect = false                        # 307 to a pre-signed URL for blobs in the bucket
# ca_file = "/etc/wharf/storage-ca.pem"   # trusted for an https:// endpoint, beside the system's

# The replicas sharing that bucket: each digest has an owner among them that fetches it from
# the upstream once; the others stream it from the owner. Peer requests carry clients'
# credentials: keep them on a private network, or use [tls] and https:// URLs.
# [cluster]
# advertise = "http://10.0.0.5:5000"      # required; WHARF_CLUSTER_ADVERTISE overrides it
# peers = ["http://10.0.0.5:5000", "http://10.0.0.6:5000"]  # or peers_dns = "host:port"
# peer_timeout = "3s"
# ca_file = "/etc/wharf/internal-ca.pem"  # trusted for https:// peers, beside the system's roots

# Event notifications, in CNCF Distribution's envelope: one table per sink, each with its
# own bounded queue (events past it are dropped and counted). Delivery never slows a pull.
# [[notify]]
# name = "hooks"                          # the `sink` metric label; default notify<index>
# url = "https://hooks.example/wharf"     # a webhook (POST), or: file = "/var/log/wharf/events.jsonl"
# events = ["pull", "fill", "purge", "evict", "denied"]   # default: all
# headers = { Authorization = "Bearer ..." }              # sent to the webhook only
# timeout = "5s"                          # one delivery attempt
# The admin API (/admin/v1/, used by `wharf cache`) on the admin listener: a file holding a
# bearer token of at least 32 characters, not world-readable (`openssl rand -hex 32`).
# Without it the API is off (404); /metrics, /healthz and /readyz stay open either way.
# [admin]
# token_file = "/etc/wharf/admin-token"

[cache]
# Upper bound for the cached blobs and manifests together; past it, they are evicted. Whole bytes ("1000000") or a number and a unit: B, KB, MB, GB, TB
# (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024); decimals are allowed
# ("1.5TiB"); units are case-insensitive. Must be greater than 0.
max_size = "50GiB"
# When the cached blobs and manifests pass max_size * high_watermark, the least recently
# used of them are evicted until they are under max_size * low_watermark. Blobs being filled
# or read are never evicted (a client that opened a blob keeps reading it). An evicted
# manifest takes the tag resolutions pointing at it along; evicted content is fetched again.
high_watermark = 0.9
low_watermark = 0.8
# Images whose blobs are never evicted: "<upstream>/<repo>:<tag pattern>", '*' matching
# any run of characters in the tag. E.g. ["docker.io/library/alpine:3.*"].
pin = []
# Blobs and manifests not served for this long are removed (with the tag resolutions of the
# manifests); a sweep runs every quarter of it, at most every minute. Pins stay. Default:
# off. E.g. "30d".
# max_idle = "30d"

[fill]
# Longest time a single blob fetch from an upstream may take in total.
# Durations: "30s", "10m", "24h", "7d", or combinations such as "1h 30m".
timeout = "1h"
# Longest gap between two body chunks from an upstream before the fetch is abandoned.
idle_timeout = "60s"
# Blob fills (downloads into the cache) running at once, over all upstreams; clients asking
# for a blob that is already being filled join that fill and do not count. A fill beyond
# the cap waits for a slot for at most idle_timeout; its clients then get
# 429 TOOMANYREQUESTS with Retry-After. A fill keeps going when its clients leave.
max_concurrent = 64

[auth]
# Clients authenticate to Wharf with the Docker token flow: Wharf's /token endpoint takes
# the client's upstream credentials (Basic), and misses are fetched upstream with them.
# Lifetime of the tokens Wharf issues.
token_ttl = "10m"
# How long "this client may pull this repository" is remembered before the upstream is
# asked again (cached content is never served to a client the upstream would refuse).
authz_ttl = "5m"
# With the upstream unreachable, cached content of a repository is served to a client
# whose credentials were authorized for it within this period, or to anyone if the
# repository was pullable anonymously when last checked. Stored decisions older than this
# and authz_ttl are pruned at start-up and hourly (not "anonymous clients may pull it").
offline_grace = "24h"

# Upstream registries. A repository whose first path component is an upstream's
# name or alias ("ghcr.io/owner/image") is fetched from that upstream; other
# repositories go to the default upstream.
# If the file has no [[upstream]] at all, the built-in list is used: docker.io
# (default), ghcr.io, quay.io, registry.k8s.io, gcr.io, mcr.microsoft.com and
# public.ecr.aws. As soon as one [[upstream]] is given, only the listed ones exist.

[[upstream]]
# Name used to select this upstream; defaults to the host[:port] of url. Must be
# non-empty, without '/' or whitespace, and unique among all names and aliases
# (compared case-insensitively).
name = "docker.io"
# Required. Base URL: http or https, a host, no query; the path must be empty or "/".
url = "https://registry-1.docker.io"
# Whether repositories without a known upstream prefix go here (default false).
# At most one upstream may be the default; a single configured upstream is the
# default anyway.
default = true
# Other names that select this upstream (default none). Same rules as name.
aliases = ["registry-1.docker.io", "index.docker.io"]
# How long a tag -> digest answer is served from cache before the upstream is asked
# again (with a HEAD, which Docker Hub does not count against its pull limit). "0s"
# revalidates the tag on every request.
tag_ttl = "5m"
# How long a referrers list (GET /v2/<name>/referrers/<digest>, OCI 1.1) is answered from
# memory before the upstream is asked again ("0s": every time). While the upstream fails, the
# last list is still served for up to stale_if_error.
referrers_ttl = "60s"
# Forward pushes to this upstream: blob uploads (monolithic, chunked, resumable, cross-
# repository mounts), manifest PUTs and DELETEs, each with the client's own credentials
# (never username/password below). Uploaded blobs and pushed manifests are cached on the way.
# Off: push requests answer 405 UNSUPPORTED.
allow_push = false
# Host names whose requests all go to this upstream, whatever their path or ns= says, so
# that Docker (one credential per host) can `docker login` to each upstream separately.
# Unique across upstreams. Default none.
hosts = []
# Hosts besides this upstream's own and its registrable domain (auth.docker.io for
# registry-1.docker.io) that may receive credentials as its token realm; a realm elsewhere,
# or a plain-http realm of an https upstream, is asked anonymously. Default none.
token_realm_hosts = []
# Repository rules: with allow, only repositories matching one of its patterns are served;
# a repository matching a deny pattern is refused whatever allow says. `*` matches within
# one path component, `**` across them, against the name as the upstream knows it (Docker
# Hub's `library/` included). Refusals are a 403 DENIED before any cache read or upstream
# request. Default: no rules, every repository is served. Changes need a restart.
# allow = ["library/*", "myorg/**"]
# deny = ["library/evil*"]
# Bytes of blobs this upstream's repositories may hold, kept under it like cache.max_size
# (same watermarks, least recently used first, pins never). A blob linked by several
# upstreams counts against each and is deleted only when none keeps it. Default: none.
# max_size = "20GiB"
# Regular expressions of tags that never change once cached: never revalidated.
# E.g. ["^v?\\d+\\.\\d+\\.\\d+$"] for semantic-version tags. Default none.
immutable_tags = []
# Serve a stale tag at once and revalidate it in the background (one at a time per tag).
stale_while_revalidate = false
# How long past tag_ttl a cached tag may still be served while the upstream fails
# (unreachable, 5xx, 429). Past it, the client gets the upstream's error.
stale_if_error = "7d"
# How long an upstream 404 for a manifest is remembered ("0s": not at all), so that a
# crash-looping pod does not hammer the upstream.
negative_ttl = "30s"
# Connecting, and waiting for response headers.
connect_timeout = "10s"
response_timeout = "30s"
# Extra attempts, with jittered exponential backoff, for upstream requests that failed
# before any byte reached a client (connection errors, timeouts, 502/503/504).
retries = 2
# After this many consecutive failures, stop asking the upstream for breaker_cooldown and
# serve the cache straight away; then let one request through. 0 disables the breaker.
breaker_failures = 5
breaker_cooldown = "30s"

[[upstream]]
name = "ghcr.io"
url = "https://ghcr.io"

# A private registry with its own certificate authority and credentials.
# [[upstream]]
# name = "registry.internal"
# url = "https://registry.internal:5000"
# # PEM file with the CA certificate(s) to trust for this upstream (default none).
# # Must exist and contain at least one certificate.
# ca_file = "/etc/wharf/internal-ca.pem"
# # Client certificate and key (PEM) for an upstream that requires mutual TLS.
# client_cert_file = "/etc/wharf/client.crt"
# client_key_file = "/etc/wharf/client.key"
# # Credentials for the upstream (default none); give both or neither.
# username = "wharf"
# password = "secret"
"#;
