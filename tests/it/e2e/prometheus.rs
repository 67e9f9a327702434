//! A real Prometheus server as a child process scraping Wharf's admin listener, its HTTP API,
//! a minimal HTTP/1.1 GET, and a parser of the Prometheus text exposition format.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::proc::{free_port, wait_ready, Proc};

/// `GET path` on 127.0.0.1:`port`: the status code and the (de-chunked) body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect to port {port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

/// Percent-encodes a query parameter value.
pub fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `prometheus` on a free 127.0.0.1 port, with its own config and storage under `dir`,
/// scraping `targets` (`host:port`, path `/metrics`) every second.
pub struct Prometheus {
    pub port: u16,
    pub proc: Proc,
}

impl Prometheus {
    pub fn start(dir: &Path, job: &str, targets: &[String]) -> Prometheus {
        let home = dir.join("prometheus");
        std::fs::create_dir_all(home.join("data")).expect("create prometheus dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: '{job}'\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_file = home.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                home.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(&home)
            .env("HOME", &home);
        let mut proc = Proc::spawn("prometheus", cmd, dir, Duration::from_secs(5));
        wait_ready(&mut proc, "prometheus", Duration::from_secs(30), || {
            http_get(port, "/-/ready").is_ok_and(|(status, _)| status == 200)
        });
        Prometheus { port, proc }
    }

    /// `GET /api/v1/<path>`: the whole JSON answer, or an error with whatever came back.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.port, &format!("/api/v1/{path}"))?;
        let json: Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if status != 200 || json["status"] != "success" {
            return Err(format!("HTTP {status}: {json}"));
        }
        Ok(json)
    }

    /// An instant query: `data.result` (for a vector, one entry per series).
    pub fn query(&self, promql: &str) -> Result<Value, String> {
        let json = self.api(&format!("query?query={}", query_escape(promql)))?;
        Ok(json["data"]["result"].clone())
    }

    /// The value of a query that yields one sample (such as a `sum(...)`); `None` if the
    /// result is empty or the query failed.
    pub fn scalar(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql).ok()?;
        let sample = result.as_array()?.first()?;
        sample["value"][1].as_str()?.parse().ok()
    }

    /// The values of every series a query yields (empty if it failed).
    pub fn values(&self, promql: &str) -> Vec<f64> {
        let result = self.query(promql).unwrap_or_default();
        let series = result.as_array().map(Vec::as_slice).unwrap_or(&[]);
        series
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse().ok())
            .collect()
    }

    /// Every metric name Prometheus has stored.
    pub fn names(&self) -> Result<BTreeSet<String>, String> {
        let json = self.api("label/__name__/values")?;
        let names = json["data"].as_array().ok_or("no data array")?;
        Ok(names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect())
    }
}

/// One sample of a text exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` answer: `# TYPE` declarations and samples.
#[derive(Debug, Default)]
pub struct Exposition {
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    pub fn parse(text: &str) -> Result<Exposition, String> {
        let mut out = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                    return Err(format!("line {}: bad TYPE: {line}", n + 1));
                };
                out.types.insert(name.to_string(), kind.to_string());
            } else if !line.is_empty() && !line.starts_with('#') {
                let sample = parse_sample(line).map_err(|e| format!("line {}: {e}", n + 1))?;
                out.samples.push(sample);
            }
        }
        Ok(out)
    }

    /// Sum of the samples named `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
            })
            .map(|s| s.value)
            .sum()
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| format!("no value: {line}"))?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut key = String::new();
        let close = loop {
            let (i, c) = chars
                .next()
                .ok_or_else(|| format!("unclosed labels: {line}"))?;
            match c {
                '}' => break i,
                ',' | ' ' => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(format!("unquoted label value: {line}"));
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('"') => break,
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(c) => value.push(c),
                                None => return Err(format!("bad escape: {line}")),
                            },
                            Some(c) => value.push(c),
                            None => return Err(format!("unclosed label value: {line}")),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        };
        rest = &after[close + 1..];
    }
    let value_text = rest.split_whitespace().next().unwrap_or("");
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .map_err(|e| format!("bad value {v:?} ({e}): {line}"))?,
    };
    Ok(Sample {
        name,
        labels,
        value,
    })
}

#[test]
fn exposition_parser_reads_types_labels_and_values() {
    let text = "# HELP wharf_x_total X.\n# TYPE wharf_x_total counter\n\
                wharf_x_total{kind=\"blob\",result=\"hit\"} 3\n\
                wharf_x_total{kind=\"blob\",result=\"miss\"} 2\n\
                wharf_h_bucket{le=\"+Inf\",q=\"a\\\"b\\\\c\"} 1e3\n\
                wharf_g 7\n";
    let e = Exposition::parse(text).expect("parses");
    assert_eq!(e.types["wharf_x_total"], "counter");
    assert_eq!(e.sum("wharf_x_total", &[("result", "hit")]), 3.0);
    assert_eq!(e.sum("wharf_x_total", &[("kind", "blob")]), 5.0);
    assert_eq!(e.samples[2].labels["q"], "a\"b\\c");
    assert_eq!(e.sum("wharf_h_bucket", &[("le", "+Inf")]), 1000.0);
    assert_eq!(e.sum("wharf_g", &[]), 7.0);
    assert_eq!(
        dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").expect("dechunk"),
        b"abcde"
    );
}
