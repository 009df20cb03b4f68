#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The runtime client against fake runtimes that answer in every framing the spec allows.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, Barrier, Mutex};
use troupe_runtime::client::{RuntimeCallError, RuntimeClient, RuntimeEvent, MAX_SSE_LINE};

const T: Duration = Duration::from_secs(10);

struct Server {
    path: PathBuf,
    accepted: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn client(&self) -> RuntimeClient {
        RuntimeClient::new(&self.path)
    }
}

/// Starts a fake runtime; `handler(stream, n)` serves the n-th accepted connection (1-based).
fn serve<F, Fut>(handler: F) -> Server
where
    F: Fn(UnixStream, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("asya-runtime.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(handler(stream, n));
        }
    });
    Server {
        path,
        accepted,
        _dir: dir,
    }
}

/// One parsed request: head text and body.
struct Request {
    head: String,
    body: Vec<u8>,
}

/// Reads one request from `s` (keeping surplus bytes in `buf`); `None` at EOF.
async fn read_request(s: &mut UnixStream, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.parse::<usize>().unwrap());
            while buf.len() < end + 4 + len {
                let mut tmp = [0u8; 65536];
                let n = s.read(&mut tmp).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some(Request { head, body });
        }
        let mut tmp = [0u8; 65536];
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn frames_json(body: &[u8]) -> Vec<u8> {
    let mut out = b"{\"frames\": [".to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(b"]}");
    out
}

fn response(status_line: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{status_line}\r\n{headers}\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// A keep-alive HTTP/1.1 server echoing the request body as `{"frames": [body]}`.
async fn keepalive_echo(mut s: UnixStream, _n: usize) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut s, &mut buf).await {
        let body = frames_json(&req.body);
        let headers = format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        s.write_all(&response("HTTP/1.1 200 OK", &headers, &body))
            .await
            .unwrap();
    }
}

async fn collect(
    client: &RuntimeClient,
    body: &'static [u8],
) -> Result<Vec<RuntimeEvent>, RuntimeCallError> {
    let mut inv = client.invoke(Bytes::from_static(body), T).await?;
    let mut events = Vec::new();
    while let Some(e) = inv.next().await? {
        events.push(e);
    }
    Ok(events)
}

fn is_unreachable(r: &Result<Vec<RuntimeEvent>, RuntimeCallError>) -> bool {
    matches!(r, Err(RuntimeCallError::Unreachable { .. }))
}

#[tokio::test]
async fn keepalive_json_reuses_one_connection() {
    let server = serve(keepalive_echo);
    let client = server.client();
    for i in 0..50 {
        let body = format!("{{\"n\": {i}}}");
        let mut inv = client.invoke(Bytes::from(body.clone()), T).await.unwrap();
        let expected = Bytes::from(frames_json(body.as_bytes()));
        assert_eq!(
            inv.next().await.unwrap(),
            Some(RuntimeEvent::FramesJson(expected))
        );
        assert_eq!(inv.next().await.unwrap(), None);
        assert_eq!(inv.next().await.unwrap(), None);
    }
    assert_eq!(server.accepted(), 1);
    assert_eq!(client.idle_count(), 1);
}

#[tokio::test]
async fn request_is_well_formed() {
    let (tx, rx) = oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let server = serve(move |mut s, _| {
        let tx = tx.clone();
        async move {
            let mut buf = Vec::new();
            let req = read_request(&mut s, &mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            tx.lock()
                .await
                .take()
                .unwrap()
                .send((req.head, req.body))
                .unwrap();
        }
    });
    let events = collect(&server.client(), b"{\"id\": \"x\"}").await.unwrap();
    assert_eq!(events, vec![RuntimeEvent::NoContent]);
    let (head, body) = rx.await.unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("POST /invoke HTTP/1.1"));
    let headers: Vec<&str> = lines.collect();
    assert!(
        headers.contains(&"Content-Type: application/json"),
        "{head}"
    );
    assert!(headers.contains(&"Content-Length: 11"), "{head}");
    assert_eq!(body, b"{\"id\": \"x\"}");
}

#[tokio::test]
async fn statuses_map_to_events_and_keep_the_connection() {
    let server = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        while let Some(req) = read_request(&mut s, &mut buf).await {
            let reply = match &req.body[..] {
                b"none" => response("HTTP/1.1 204 No Content", "", b""),
                b"bad" => response(
                    "HTTP/1.1 400 Bad Request",
                    "Content-Length: 31\r\n",
                    b"{\"error\": \"msg_parsing_error\"} ",
                ),
                b"boom" => response(
                    "HTTP/1.1 500 Internal Server Error",
                    "Content-Length: 29\r\n",
                    b"{\"error\": \"processing_error\"}",
                ),
                _ => response("HTTP/1.1 404 Not Found", "Content-Length: 0\r\n", b""),
            };
            s.write_all(&reply).await.unwrap();
        }
    });
    let client = server.client();
    assert_eq!(
        collect(&client, b"none").await.unwrap(),
        vec![RuntimeEvent::NoContent]
    );
    assert_eq!(
        collect(&client, b"bad").await.unwrap(),
        vec![RuntimeEvent::Error {
            status: 400,
            body: Bytes::from_static(b"{\"error\": \"msg_parsing_error\"} ")
        }]
    );
    assert_eq!(
        collect(&client, b"boom").await.unwrap(),
        vec![RuntimeEvent::Error {
            status: 500,
            body: Bytes::from_static(b"{\"error\": \"processing_error\"}")
        }]
    );
    assert_eq!(server.accepted(), 1);
    let err = collect(&client, b"other").await.unwrap_err();
    assert!(
        err.to_string().contains("unexpected HTTP status 404"),
        "{err}"
    );
    // The connection that carried the 404 is not reused.
    assert_eq!(client.idle_count(), 0);
    assert_eq!(
        collect(&client, b"none").await.unwrap(),
        vec![RuntimeEvent::NoContent]
    );
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn chunked_body_is_decoded_and_connection_reused() {
    let server = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        while read_request(&mut s, &mut buf).await.is_some() {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            s.write_all(head.as_bytes()).await.unwrap();
            for part in [
                &b"4;x=y\r\n{\"fr\r\n"[..],
                b"b\r\names\": [1]}\r\n",
                b"0\r\n",
                b"X-T: 1\r\n\r\n",
            ] {
                s.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
        }
    });
    let client = server.client();
    for _ in 0..3 {
        assert_eq!(
            collect(&client, b"{}").await.unwrap(),
            vec![RuntimeEvent::FramesJson(Bytes::from_static(
                b"{\"frames\": [1]}"
            ))]
        );
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn close_delimited_body_uses_a_connection_per_call() {
    let server = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await.unwrap();
        let body = b"{\"frames\": [\"close\"]}";
        s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        for part in body.chunks(5) {
            s.write_all(part).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let client = server.client();
    for _ in 0..3 {
        assert_eq!(
            collect(&client, b"{}").await.unwrap(),
            vec![RuntimeEvent::FramesJson(Bytes::from_static(
                b"{\"frames\": [\"close\"]}"
            ))]
        );
    }
    assert_eq!(server.accepted(), 3);
}

#[tokio::test]
async fn http10_responses_are_never_reused() {
    // Asya style: HTTP/1.0, Content-Length, close after the response.
    let asya = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await.unwrap();
        s.write_all(&response(
            "HTTP/1.0 200 OK",
            "Content-Type: application/json\r\nContent-Length: 13\r\n",
            b"{\"frames\": []",
        ))
        .await
        .unwrap();
        s.write_all(b"}").await.unwrap_or_default();
    });
    let client = asya.client();
    for _ in 0..3 {
        let events = collect(&client, b"{}").await.unwrap();
        assert_eq!(
            events,
            vec![RuntimeEvent::FramesJson(Bytes::from_static(
                b"{\"frames\": []"
            ))]
        );
    }
    assert_eq!(asya.accepted(), 3);

    // HTTP/1.0 that leaves the connection open must still not be reused.
    let lingering = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        while read_request(&mut s, &mut buf).await.is_some() {
            s.write_all(&response("HTTP/1.0 200 OK", "Content-Length: 2\r\n", b"{}"))
                .await
                .unwrap();
        }
    });
    let client = lingering.client();
    for _ in 0..3 {
        assert_eq!(
            collect(&client, b"{}").await.unwrap(),
            vec![RuntimeEvent::FramesJson(Bytes::from_static(b"{}"))]
        );
    }
    assert_eq!(lingering.accepted(), 3);

    // HTTP/1.0 without Content-Length: the body ends at close.
    let bare = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await.unwrap();
        s.write_all(b"HTTP/1.0 500 Internal Server Error\r\n\r\n{\"error\": \"processing_error\"}")
            .await
            .unwrap();
    });
    assert_eq!(
        collect(&bare.client(), b"{}").await.unwrap(),
        vec![RuntimeEvent::Error {
            status: 500,
            body: Bytes::from_static(b"{\"error\": \"processing_error\"}")
        }]
    );
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";

async fn write_slowly(s: &mut UnixStream, data: &[u8], piece: usize) {
    for part in data.chunks(piece) {
        s.write_all(part).await.unwrap();
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn sse_events_are_yielded_as_they_arrive() {
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let go = Arc::new(Mutex::new(Some(go_rx)));
    let server = serve(move |mut s, _| {
        let go = go.clone();
        async move {
            let mut buf = Vec::new();
            read_request(&mut s, &mut buf).await.unwrap();
            write_slowly(&mut s, SSE_HEAD, 7).await;
            write_slowly(
                &mut s,
                b"event: downstream\r\ndata: {\"payload\": 1}\r\n\r\n",
                1,
            )
            .await;
            // Nothing more until the test has seen the first frame.
            go.lock().await.take().unwrap().await.unwrap();
            let rest: &[u8] = b": keep-alive comment\n\
                event: upstream\ndata: {\"payload\": {\"partial\": true}}\n\n\
                event: downstream\ndata: {\"payload\":\ndata: 2}\n\n\
                event: error\ndata: {\"error\": \"processing_error\"}\n\n\
                event: done\ndata: {}\n\n";
            write_slowly(&mut s, rest, 3).await;
            // Asya keeps the socket until it closes; the client must not need the EOF.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    let client = server.client();
    let mut inv = client.invoke(Bytes::from_static(b"{}"), T).await.unwrap();
    // The server sends nothing more until `go`, so this only returns if the client
    // yields the first frame as soon as it is complete.
    let first = tokio::time::timeout(Duration::from_secs(5), inv.next()).await;
    assert_eq!(
        first
            .expect("first frame not yielded before the rest of the stream")
            .unwrap(),
        Some(RuntimeEvent::Frame(Bytes::from_static(b"{\"payload\": 1}")))
    );
    go_tx.send(()).unwrap();
    assert_eq!(
        inv.next().await.unwrap(),
        Some(RuntimeEvent::Upstream(Bytes::from_static(
            b"{\"payload\": {\"partial\": true}}"
        )))
    );
    assert_eq!(
        inv.next().await.unwrap(),
        Some(RuntimeEvent::Frame(Bytes::from_static(
            b"{\"payload\":\n2}"
        )))
    );
    assert_eq!(
        inv.next().await.unwrap(),
        Some(RuntimeEvent::Error {
            status: 200,
            body: Bytes::from_static(b"{\"error\": \"processing_error\"}")
        })
    );
    let done = tokio::time::timeout(Duration::from_secs(5), inv.next()).await;
    assert_eq!(done.unwrap().unwrap(), None);
    assert_eq!(inv.next().await.unwrap(), None);
    assert_eq!(
        client.idle_count(),
        0,
        "SSE with Connection: close is not pooled"
    );
}

#[tokio::test]
async fn sse_eof_before_done_is_unreachable() {
    let server = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await.unwrap();
        s.write_all(SSE_HEAD).await.unwrap();
        s.write_all(
            b"event: downstream\ndata: {\"payload\": 1}\n\nevent: downstream\ndata: {\"pay",
        )
        .await
        .unwrap();
    });
    let client = server.client();
    let mut inv = client.invoke(Bytes::from_static(b"{}"), T).await.unwrap();
    assert!(matches!(
        inv.next().await.unwrap(),
        Some(RuntimeEvent::Frame(_))
    ));
    let err = inv.next().await.unwrap_err();
    assert!(matches!(err, RuntimeCallError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("before the done event"), "{err}");
    assert_eq!(
        inv.next().await.unwrap(),
        None,
        "the call is over after an error"
    );
}

#[tokio::test]
async fn sse_over_http11_framing_reuses_the_connection() {
    let server = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        let mut i = 0;
        while read_request(&mut s, &mut buf).await.is_some() {
            i += 1;
            let events: &[u8] = b"event: downstream\ndata: {\"n\": 1}\n\nevent: done\ndata: {}\n\n";
            let mut reply = Vec::new();
            if i % 2 == 1 {
                reply.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
                for part in events.chunks(10) {
                    reply.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    reply.extend_from_slice(part);
                    reply.extend_from_slice(b"\r\n");
                }
                reply.extend_from_slice(b"0\r\n\r\n");
            } else {
                reply.extend_from_slice(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n",
                        events.len()
                    )
                    .as_bytes(),
                );
                reply.extend_from_slice(events);
            }
            s.write_all(&reply).await.unwrap();
        }
    });
    let client = server.client();
    for _ in 0..4 {
        assert_eq!(
            collect(&client, b"{}").await.unwrap(),
            vec![RuntimeEvent::Frame(Bytes::from_static(b"{\"n\": 1}"))]
        );
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn garbage_replies_are_unreachable() {
    // Garbage without a newline and with the connection left open must fail at once.
    let server = serve(|mut s, n| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await.unwrap();
        let reply: &[u8] = match n {
            1 => b"SSH-2.0-OpenSSH_9.6",
            2 => b"HTTP/1.1 2O0 OK\r\n\r\n",
            3 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            4 => b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"frames\"",
            _ => b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nevent",
        };
        s.write_all(reply).await.unwrap();
        if n == 1 {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
    let client = server.client();
    for _ in 0..5 {
        let r = collect(&client, b"{}").await;
        assert!(is_unreachable(&r), "{r:?}");
    }
    assert_eq!(server.accepted(), 5);
}

#[tokio::test]
async fn missing_socket_is_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let client = RuntimeClient::new(dir.path().join("nope.sock"));
    let err = collect(&client, b"{}").await.unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    // Nothing was sent, so the caller may requeue instead of failing the message.
    assert!(
        matches!(err, RuntimeCallError::NotDelivered { .. }),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_reply_times_out() {
    let server = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        while read_request(&mut s, &mut buf).await.is_some() {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        }
    });
    let client = server.client();
    let start = tokio::time::Instant::now();
    let err = client
        .invoke(Bytes::from_static(b"{}"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeCallError::Timeout(d) if d == Duration::from_secs(5)),
        "{err}"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert_eq!(
        client.idle_count(),
        0,
        "a timed-out connection is not pooled"
    );
}

#[tokio::test(start_paused = true)]
async fn sse_stall_times_out_with_the_whole_call_deadline() {
    let server = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await.unwrap();
        s.write_all(SSE_HEAD).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        s.write_all(b"event: downstream\ndata: 1\n\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        s.write_all(b"event: downstream\ndata: 2\n\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let client = server.client();
    let start = tokio::time::Instant::now();
    let mut inv = client
        .invoke(Bytes::from_static(b"{}"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        inv.next().await.unwrap(),
        Some(RuntimeEvent::Frame(Bytes::from_static(b"1")))
    );
    // Each gap is under 5 s, but the second event lands after the call's 5 s deadline.
    let err = inv.next().await.unwrap_err();
    assert!(matches!(err, RuntimeCallError::Timeout(_)), "{err}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
}

#[tokio::test]
async fn idle_connection_closed_by_server_is_retried_transparently() {
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let served = Arc::new(AtomicUsize::new(0));
    let served2 = served.clone();
    let server = serve(move |mut s, _| {
        let closed_tx = closed_tx.clone();
        let served = served2.clone();
        async move {
            let mut buf = Vec::new();
            read_request(&mut s, &mut buf).await.unwrap();
            served.fetch_add(1, Ordering::SeqCst);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .await
                .unwrap();
            drop(s); // keep-alive promised, then closed while idle
            closed_tx.send(()).unwrap();
        }
    });
    let client = server.client();
    let expected = vec![RuntimeEvent::FramesJson(Bytes::from_static(b"{}"))];
    for round in 1..=3 {
        assert_eq!(collect(&client, b"{}").await.unwrap(), expected);
        closed_rx.recv().await.unwrap();
        assert_eq!(
            client.idle_count(),
            1,
            "round {round}: pooled, though dead by now"
        );
    }
    assert_eq!(server.accepted(), 3);
    assert_eq!(served.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn half_closed_idle_connection_is_retried_on_eof() {
    let server = serve(|mut s, n| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            .await
            .unwrap();
        if n == 1 {
            // Stop writing but keep reading: the next request is written fine and the
            // client then sees EOF before any response byte.
            s.shutdown().await.unwrap();
            let _ = read_request(&mut s, &mut buf).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    let client = server.client();
    let expected = vec![RuntimeEvent::FramesJson(Bytes::from_static(b"{}"))];
    assert_eq!(collect(&client, b"{}").await.unwrap(), expected);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(collect(&client, b"{}").await.unwrap(), expected);
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn retry_happens_once_and_only_for_pooled_connections() {
    // First connection answers once and closes; later ones close without answering.
    let server = serve(|mut s, n| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await.unwrap();
        if n == 1 {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .await
                .unwrap();
        }
    });
    let client = server.client();
    collect(&client, b"{}").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = collect(&client, b"{}").await;
    assert!(is_unreachable(&r), "{r:?}");
    assert_eq!(
        server.accepted(),
        2,
        "stale pooled connection, then exactly one fresh try"
    );
    let r = collect(&client, b"{}").await;
    assert!(is_unreachable(&r), "{r:?}");
    assert_eq!(server.accepted(), 3, "no retry on a fresh connection");
}

#[tokio::test]
async fn partial_reply_on_reused_connection_is_not_retried() {
    let server = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            .await
            .unwrap();
        read_request(&mut s, &mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await.unwrap();
    });
    let client = server.client();
    collect(&client, b"{}").await.unwrap();
    let r = collect(&client, b"{}").await;
    assert!(is_unreachable(&r), "{r:?}");
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn dropping_an_invocation_mid_stream_discards_the_connection() {
    let (eof_tx, eof_rx) = oneshot::channel();
    let eof_tx = Arc::new(Mutex::new(Some(eof_tx)));
    let server = serve(move |mut s, n| {
        let eof_tx = eof_tx.clone();
        async move {
            let mut buf = Vec::new();
            read_request(&mut s, &mut buf).await.unwrap();
            if n == 1 {
                s.write_all(&[SSE_HEAD, b"event: downstream\ndata: 1\n\n"].concat())
                    .await
                    .unwrap();
                let mut rest = [0u8; 16];
                let n = s.read(&mut rest).await.unwrap();
                eof_tx.lock().await.take().unwrap().send(n).unwrap();
            } else {
                s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                    .await
                    .unwrap();
            }
        }
    });
    let client = server.client();
    let mut inv = client.invoke(Bytes::from_static(b"{}"), T).await.unwrap();
    assert!(matches!(
        inv.next().await.unwrap(),
        Some(RuntimeEvent::Frame(_))
    ));
    drop(inv);
    let read = tokio::time::timeout(Duration::from_secs(5), eof_rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, 0, "server saw EOF: the client closed the connection");
    assert_eq!(
        collect(&client, b"{}").await.unwrap(),
        vec![RuntimeEvent::NoContent]
    );
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn concurrent_invocations_each_get_a_connection() {
    let barrier = Arc::new(Barrier::new(8));
    let server = serve(move |mut s, _| {
        let barrier = barrier.clone();
        async move {
            let mut buf = Vec::new();
            let mut first = true;
            while let Some(req) = read_request(&mut s, &mut buf).await {
                if first {
                    // Proves all eight requests are in flight at once.
                    barrier.wait().await;
                    first = false;
                }
                let body = frames_json(&req.body);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                s.write_all(&[head.as_bytes(), &body].concat())
                    .await
                    .unwrap();
            }
        }
    });
    let client = Arc::new(server.client());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let client = client.clone();
        set.spawn(async move {
            let body = format!("{i}");
            let mut inv = client.invoke(Bytes::from(body.clone()), T).await.unwrap();
            let event = inv.next().await.unwrap();
            assert_eq!(
                event,
                Some(RuntimeEvent::FramesJson(Bytes::from(frames_json(
                    body.as_bytes()
                ))))
            );
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert_eq!(server.accepted(), 8);
    assert_eq!(client.idle_count(), 8);
    for _ in 0..16 {
        collect(&client, b"1").await.unwrap();
    }
    assert_eq!(server.accepted(), 8, "pooled connections are reused");
}

#[tokio::test]
async fn sse_lines_up_to_16_mib_are_accepted_and_longer_rejected() {
    let server = serve(|mut s, n| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await.unwrap();
        // Line = "data: " + payload; the limit applies to the whole line.
        let payload_len = if n == 1 {
            MAX_SSE_LINE - 6
        } else {
            MAX_SSE_LINE - 5
        };
        let mut reply = SSE_HEAD.to_vec();
        reply.extend_from_slice(b"event: downstream\ndata: ");
        reply.resize(reply.len() + payload_len, b'x');
        reply.extend_from_slice(b"\n\nevent: done\ndata: {}\n\n");
        let _ = s.write_all(&reply).await;
    });
    let client = server.client();
    let events = collect(&client, b"{}").await.unwrap();
    assert!(matches!(&events[..], [RuntimeEvent::Frame(b)] if b.len() == MAX_SSE_LINE - 6));
    let err = collect(&client, b"{}").await.unwrap_err();
    assert!(err.to_string().contains("SSE line longer than"), "{err}");
}

#[tokio::test]
async fn healthz_reports_readiness() {
    let server = serve(|mut s, _| async move {
        let mut buf = Vec::new();
        while let Some(req) = read_request(&mut s, &mut buf).await {
            let reply = if req.head.starts_with("GET /healthz HTTP/1.1\r\n") {
                response(
                    "HTTP/1.1 200 OK",
                    "Content-Length: 19\r\n",
                    b"{\"status\": \"ready\"}",
                )
            } else {
                response("HTTP/1.1 404 Not Found", "Content-Length: 0\r\n", b"")
            };
            s.write_all(&reply).await.unwrap();
        }
    });
    let client = server.client();
    client.healthz(T).await.unwrap();
    client.healthz(T).await.unwrap();
    assert_eq!(server.accepted(), 1);
    let err = collect(&client, b"{}").await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

/// An Asya runtime older than the HTTP protocol reads a 4-byte length prefix and then
/// waits for that many bytes (`GET ` reads as ~1.2 GB), or answers a length-prefixed JSON
/// frame: both are named as "does not speak HTTP", never a plain timeout.
#[tokio::test]
async fn an_old_length_prefixed_runtime_is_named_not_timed_out() {
    let silent = serve(|mut s, _| async move {
        let mut prefix = [0u8; 4];
        let _ = s.read_exact(&mut prefix).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let err = silent
        .client()
        .healthz(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeCallError::NotHttp { silent: true, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not speak HTTP"), "{err}");

    let framed = serve(|mut s, _| async move {
        let mut prefix = [0u8; 4];
        let _ = s.read_exact(&mut prefix).await;
        let body = br#"{"error":"message too large"}"#;
        let mut reply = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        reply.extend_from_slice(body);
        reply.push(b'\n');
        let _ = s.write_all(&reply).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let err = framed
        .client()
        .healthz(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeCallError::NotHttp { silent: false, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Asya runtime older than"), "{err}");

    // A runtime that is simply absent stays a timeout/unreachable, not "not HTTP".
    let dir = tempfile::tempdir().unwrap();
    let err = RuntimeClient::new(dir.path().join("none.sock"))
        .healthz(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(!matches!(err, RuntimeCallError::NotHttp { .. }), "{err:?}");
}

/// A pooled connection that closes after reading the request may have delivered it; a
/// retry on a fresh connection that the dying runtime never reads (reset) must not turn
/// that into "not delivered": the message would run a second time instead of x-sump.
#[tokio::test]
async fn unread_retry_after_a_possible_delivery_is_unreachable() {
    let server = serve(|mut s, n| async move {
        let mut buf = Vec::new();
        if n == 1 {
            read_request(&mut s, &mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .await
                .unwrap();
            // Reads the next request whole, then dies: EOF, maybe delivered.
            read_request(&mut s, &mut buf).await.unwrap();
        } else {
            // Accepted while dying: the request arrives but is never read (reset).
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let client = server.client();
    collect(&client, b"{}").await.unwrap();
    let r = collect(&client, b"{}").await;
    assert!(is_unreachable(&r), "{r:?}");
    assert_eq!(server.accepted(), 2);
}

/// A fresh connection whose request the runtime never reads (it was dying) is not
/// delivered: the message is requeued.
#[tokio::test]
async fn unread_request_on_a_fresh_connection_is_not_delivered() {
    let server = serve(|_s, _n| async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let client = server.client();
    let r = collect(&client, b"{}").await;
    assert!(
        matches!(r, Err(RuntimeCallError::NotDelivered { .. })),
        "{r:?}"
    );
}
