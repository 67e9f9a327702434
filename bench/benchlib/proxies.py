"""The proxies under test: Wharf, Distribution in proxy mode, nginx proxy_cache."""

import json
import re
import shutil

from .procs import Proc, free_port, http_status, wait_up


class Proxy:
    """What every proxy under test shares: a process, a fresh directory per start, a port."""

    name = "proxy"

    def __init__(self, work, upstream):
        self.work, self.upstream = work, upstream
        self.runs = 0
        self.proc = None

    def stop(self):
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self):
        return [self.proc.pid]

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def auth_headers(self, repo):
        return {}


class Wharf(Proxy):
    name = "wharf"

    def __init__(self, work, binary, upstream):
        super().__init__(work, upstream)
        self.binary = binary

    def start(self):
        self.runs += 1
        d = self.work / f"wharf-{self.runs}"
        d.mkdir()
        self.port = free_port()
        cfg = d / "wharf.toml"
        cfg.write_text(f"""listen = "127.0.0.1:{self.port}"
admin_listen = "127.0.0.1:{free_port()}"
data_dir = "{d / 'data'}"
[cache]
max_size = "20GiB"
[[upstream]]
name = "upstream"
url = "{self.upstream.url}"
default = true
ca_file = "{self.upstream.ca}"
""")
        self.proc = Proc("wharf", [str(self.binary), "serve", "--config", str(cfg)],
                         d / "wharf.log", env={"WHARF_LOG": "warn"})
        wait_up(f"http://127.0.0.1:{self.port}/v2/", self.proc)
        self.dir = d


    def auth_headers(self, repo):
        """Wharf challenges every client: the token dance, once."""
        status, headers, _ = http_status(f"http://{self.host}/v2/")
        challenge = next((v for k, v in headers.items() if k.lower() == "www-authenticate"), "")
        realm = re.search(r'realm="([^"]+)"', challenge)
        service = re.search(r'service="([^"]+)"', challenge)
        if status != 401 or not realm:
            return {}
        url = f"{realm.group(1)}?scope=repository:{repo}:pull"
        if service:
            url += f"&service={service.group(1)}"
        _, _, body = http_status(url)
        return {"Authorization": f"Bearer {json.loads(body)['token']}"}


class Distribution(Proxy):
    name = "distribution-proxy"

    def start(self):
        self.runs += 1
        d = self.work / f"distribution-{self.runs}"
        d.mkdir()
        self.port = free_port()
        cfg = d / "config.yml"
        cfg.write_text(f"""version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {d / 'data'}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{self.port}
proxy:
  remoteurl: {self.upstream.url}
""")
        self.proc = Proc("distribution", ["docker-registry", "serve", str(cfg)], d / "log",
                         env={"SSL_CERT_FILE": str(self.upstream.ca)})
        wait_up(f"http://127.0.0.1:{self.port}/v2/", self.proc)
        self.dir = d


class Nginx(Proxy):
    name = "nginx"

    def start(self):
        self.runs += 1
        d = self.work / f"nginx-{self.runs}"
        for sub in ["cache", "tmp"]:
            (d / sub).mkdir(parents=True)
        self.port = free_port()
        cfg = d / "nginx.conf"
        t = d / "tmp"
        cfg.write_text(f"""user root;
worker_processes auto;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {t}/body;
  proxy_temp_path {t}/proxy;
  fastcgi_temp_path {t}/fastcgi;
  uwsgi_temp_path {t}/uwsgi;
  scgi_temp_path {t}/scgi;
  # Manifests vary by Accept; blobs do not.
  map $uri $accept_key {{ ~/manifests/ $http_accept; default ""; }}
  proxy_cache_path {d}/cache levels=1:2 keys_zone=registry:16m max_size=20g inactive=1d use_temp_path=off;
  server {{
    listen 127.0.0.1:{self.port};
    location /v2/ {{
      proxy_pass {self.upstream.url};
      proxy_ssl_verify off;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache registry;
      proxy_cache_key "$request_uri $accept_key";
      proxy_cache_valid 200 1h;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10m;
      proxy_cache_lock_age 10m;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
    }}
  }}
}}
""")
        self.proc = Proc("nginx", ["nginx", "-c", str(cfg), "-p", str(d)], d / "stdout.log")
        wait_up(f"http://127.0.0.1:{self.port}/v2/", self.proc)
        self.dir = d


