//! Upload bodies stream through Wharf: the upstream has the first bytes of a chunk while the
//! client is still holding back the rest (a Wharf that buffered the body would wait forever).

use super::{cached, follow, location, open, start, with_param, PUSH};
use crate::support::{data, digest_of, eventually, Fake, Session};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

type Chunks =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_bodies_stream_through_wharf() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let w = start(&fake, dir.path(), PUSH).await;
    let base = format!("http://{}", w.addr);
    let s = Session::anonymous();
    let r = open(&s, &format!("{base}/v2/org/app/blobs/uploads/")).await;
    let url = follow(&base, &location(&r));
    let token = s.tokens_seen().pop().expect("a Wharf token");

    let blob = data(4 << 20, 91);
    let d = digest_of(&blob);
    let (first, rest) = blob.split_at(1 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let chunks: Chunks = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        let b = rx.recv().await?;
        Some((Ok(Frame::data(b)), rx))
    }));
    let req = http::Request::builder()
        .method("PATCH")
        .uri(&url)
        .header("authorization", format!("Bearer {token}"))
        .body(StreamBody::new(chunks))
        .expect("request");
    let client: Client<HttpConnector, StreamBody<Chunks>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let sent = tokio::spawn(async move { client.request(req).await });
    tx.send(Bytes::copy_from_slice(first)).await.expect("send");
    let arrived = eventually(Duration::from_secs(10), || {
        fake.upload_bytes.load(Ordering::SeqCst) >= first.len() as u64
    })
    .await;
    assert!(
        arrived,
        "the upstream has not seen the first MiB while the client holds the rest"
    );
    for chunk in rest.chunks(256 << 10) {
        tx.send(Bytes::copy_from_slice(chunk)).await.expect("send");
    }
    drop(tx);
    let resp = sent.await.expect("join").expect("PATCH answered");
    assert_eq!(resp.status(), 202);
    let loc = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string();
    let _ = resp.into_body().collect().await;
    let put = with_param(&follow(&base, &loc), &format!("digest={d}"));
    let r = s.send("PUT", &put, &[], Bytes::new()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(fake.blob_bytes(&d).as_deref(), Some(blob.as_slice()));
    assert!(cached(&w, &d), "a chunked-encoding body is teed too");
    w.shutdown().await;
}
