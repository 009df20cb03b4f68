#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Inputs the fuzz targets in `fuzz/` found, replayed against the live client over a
//! real Unix socket.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use troupe_runtime::client::{RuntimeCallError, RuntimeClient, RuntimeEvent};

/// A chunked SSE reply whose next chunk-size line is garbage, written in one piece:
/// the complete event before it must still be delivered (it was when the bytes came
/// in two reads, and lost when they came in one), then the call fails.
#[tokio::test]
async fn chunked_sse_event_before_a_framing_error_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.ends_with(b"{}") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            req.extend_from_slice(&buf[..n]);
        }
        let event = b"event: upstream\ndata: {\"p\":1}\n\n";
        let mut reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
            Transfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        reply.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
        reply.extend_from_slice(event);
        reply.extend_from_slice(b"\r\nzz\r\n");
        s.write_all(&reply).await.unwrap();
        // Keep the connection open: the error must come from the bytes, not from EOF.
        let _ = s.read(&mut buf).await;
    });
    let client = RuntimeClient::new(&path);
    let mut inv = client
        .invoke(Bytes::from_static(b"{}"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        inv.next().await.unwrap(),
        Some(RuntimeEvent::Upstream(Bytes::from_static(b"{\"p\":1}")))
    );
    let err = inv.next().await.unwrap_err();
    assert!(
        matches!(&err, RuntimeCallError::Unreachable { message, .. } if message.contains("bad chunk size line")),
        "{err}"
    );
}
