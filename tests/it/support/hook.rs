//! A webhook receiver on loopback: a small hyper server, on a thread of its own (so sync e2e
//! tests and async tests both use it), that records each request's headers and JSON body and
//! answers the status it is told.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Delivery>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    /// Starts answering `status` to every request.
    pub fn start(status: u16) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(status));
        let (g, s) = (got.clone(), status.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(serve(listener, g, s));
        });
        Receiver { addr, got, status }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().expect("lock").clone()
    }

    /// Every event of every delivery, in order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for d in self.deliveries() {
            let v: serde_json::Value = serde_json::from_slice(&d.body).expect("a JSON envelope");
            out.extend(v["events"].as_array().expect("events").iter().cloned());
        }
        out
    }
}

async fn serve(
    listener: std::net::TcpListener,
    got: Arc<Mutex<Vec<Delivery>>>,
    status: Arc<AtomicU16>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (got, status) = (got.clone(), status.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (got, status) = (got.clone(), status.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes().to_vec())
                        .unwrap_or_default();
                    let code = status.load(Ordering::SeqCst);
                    if code < 300 {
                        got.lock().expect("lock").push(Delivery {
                            headers: parts.headers,
                            body,
                        });
                    }
                    let mut resp = http::Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = http::StatusCode::from_u16(code).expect("status");
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
