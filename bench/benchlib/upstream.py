"""The upstream: docker-registry over HTTPS with a test CA, its request log, test images."""

import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile
import time

from .procs import Proc, free_port, run, wait_up

MIB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


class Upstream:
    def __init__(self, work):
        self.work = work
        self.port = free_port()
        d = work / "upstream"
        d.mkdir()
        self.ca = work / "ca.pem"
        self.cert_dir = work / "certs.d"
        self.cert_dir.mkdir()
        o = lambda *a: run(["openssl", *a], cwd=work)
        o("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
          "-days", "2", "-subj", "/CN=wharf-bench-ca")
        o("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
          "-subj", "/CN=127.0.0.1")
        (work / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        o("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
          "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
        shutil.copy(self.ca, self.cert_dir / "ca.crt")
        config = d / "config.yml"
        config.write_text(f"""version: 0.1
log: {{level: info, formatter: text}}
storage:
  filesystem: {{rootdirectory: {d / 'data'}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{self.port}
  tls: {{certificate: {work / 'server.pem'}, key: {work / 'server.key'}}}
""")
        self.logfile = d / "registry.log"
        self.proc = Proc("upstream", ["docker-registry", "serve", str(config)], self.logfile)
        wait_up(f"https://127.0.0.1:{self.port}/v2/", self.proc)

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"https://{self.host}"

    def mark(self):
        return self.logfile.stat().st_size

    def blob_bytes_since(self, mark):
        """Bytes of blob GET responses logged after `mark`, once the log stops growing."""
        last, stable_since = -1, time.time()
        end = time.time() + 10
        while time.time() < end:
            size = self.logfile.stat().st_size
            if size != last:
                last, stable_since = size, time.time()
            elif time.time() - stable_since > 0.5:
                break
            time.sleep(0.1)
        with open(self.logfile, "rb") as f:
            f.seek(mark)
            text = f.read().decode("utf-8", "replace")
        total = 0
        for line in text.splitlines():
            if "response completed" not in line or "http.request.method=GET" not in line:
                continue
            if "/blobs/sha256:" not in line:
                continue
            m = re.search(r"http\.response\.written=(\d+)", line)
            if m:
                total += int(m.group(1))
        return total


def make_image(work, name, layer_mibs):
    """An OCI layout with one uncompressed tar layer of random bytes per entry of
    `layer_mibs`; returns (layout dir, total blob bytes incl. manifest, big layer digest)."""
    layout = work / f"layout-{name}"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data_path=None, data=None):
        h = hashlib.sha256()
        if data is None:
            with open(data_path, "rb") as f:
                for chunk in iter(lambda: f.read(MIB), b""):
                    h.update(chunk)
            digest = h.hexdigest()
            shutil.move(data_path, blobs / digest)
            size = (blobs / digest).stat().st_size
        else:
            h.update(data)
            digest = h.hexdigest()
            (blobs / digest).write_bytes(data)
            size = len(data)
        return {"digest": f"sha256:{digest}", "size": size}

    layers, diff_ids = [], []
    for i, mib in enumerate(layer_mibs):
        raw = work / f"{name}-{i}.bin"
        with open(raw, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(MIB))
        tar_path = work / f"{name}-{i}.tar.gz"
        # gzip (fast; random bytes do not compress): skopeo would compress a plain tar layer
        # on push, changing its digest.
        with tarfile.open(tar_path, "w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as t:
            t.add(raw, arcname=f"layer{i}.bin")
        raw.unlink()
        with gzip.open(tar_path, "rb") as f:
            h = hashlib.sha256()
            for chunk in iter(lambda: f.read(MIB), b""):
                h.update(chunk)
        diff_ids.append(f"sha256:{h.hexdigest()}")
        d = put(data_path=tar_path)
        d["mediaType"] = LAYER_TAR_GZIP
        layers.append(d)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }
    c = put(data=json.dumps(config).encode())
    c["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": c, "layers": layers,
    }).encode()
    m = put(data=manifest)
    m["mediaType"] = OCI_MANIFEST
    m["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [m]}))
    total = sum(l["size"] for l in layers) + c["size"] + len(manifest)
    biggest = max(layers, key=lambda l: l["size"])
    return layout, total, biggest
