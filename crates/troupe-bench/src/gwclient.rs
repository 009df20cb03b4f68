//! The HTTP side of the gateway benchmark, run as a child process
//! (`troupe-bench gateway-client ...`, hidden) so that its CPU and memory — a thousand
//! client connections among them — are not counted as the troupe process's.
//!
//! Protocol on stdin/stdout, one line each: the child prints `ready` when set up (warm-up
//! done, tasks created) and waits for any line on stdin before measuring; the SSE jobs
//! print `half` once half of the streams delivered their first event and `open` once all
//! did, waiting for a line after each (the benchmark reads the mesh's RSS there);
//! every job ends with `result <json>`. Failures go to stderr and a non-zero exit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::sync::{mpsc, Semaphore};

use crate::sse::{SseEvent, SseParser};
use crate::stats;

/// Longest a single create or event post may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a sequential task may take from create to its terminal status event.
const TASK_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the SSE streams may take to open, all together.
const OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest one round of posted events may take to reach every subscriber.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// SSE connections being set up at once: all at once would overflow the listener's
/// accept backlog and fall into SYN retransmits (1 s each).
const OPENING_AT_ONCE: usize = 64;

/// What the child does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Job {
    /// Part 1: sequential tasks, create then SSE until the terminal status.
    Seq,
    /// Part 2: concurrent creators for a bounded time.
    Load,
    /// Part 3a: many subscribers of one task.
    SseOne,
    /// Part 3b: one subscriber on each of many tasks.
    SseMany,
}

/// Options of the child.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Base URL of the mesh's gateway.
    #[arg(long)]
    pub url: String,
    /// The job.
    #[arg(long, value_enum)]
    pub job: Job,
    /// First actor of the pipeline.
    #[arg(long, default_value = "a")]
    pub actor: String,
    /// Route tail after the first actor.
    #[arg(long, value_delimiter = ',', default_value = "b,c")]
    pub route_next: Vec<String>,
    /// Actor without replicas: its tasks stay pending (SSE jobs).
    #[arg(long, default_value = "hold")]
    pub hold: String,
    /// Seq: measured tasks.
    #[arg(long, default_value_t = 300)]
    pub tasks: usize,
    /// Seq: unmeasured tasks first.
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
    /// Load: concurrent creators; SSE many: concurrent posters and creators.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Load: seconds of creating.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Load: at most this many creates, whatever the time.
    #[arg(long, default_value_t = 100_000)]
    pub max_creates: usize,
    /// SSE: streams to open.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// SSE: rounds per event kind (status, then FLY).
    #[arg(long, default_value_t = 5)]
    pub events: usize,
    /// A new connection for every request instead of reusing idle ones.
    #[arg(long)]
    pub fresh: bool,
}

/// Result of the seq job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeqResult {
    /// Create-to-terminal-status latency of each measured task, in microseconds.
    pub latencies_us: Vec<u64>,
}

/// Result of the load job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    /// 201 answers.
    pub created: usize,
    /// Other answers and transport errors.
    pub errors: usize,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// From the first request to the last answer.
    pub wall_s: f64,
}

/// Delivery latencies of one event kind.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Delivery {
    /// Subscriber receipts expected.
    pub expected: usize,
    /// Receipts matched to a post.
    pub delivered: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// Result of the SSE jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SseResult {
    /// Streams opened.
    pub subscribers: usize,
    /// Tasks they follow.
    pub tasks: usize,
    /// Until every stream delivered its catch-up event.
    pub open_s: f64,
    /// Status events.
    pub status: Delivery,
    /// FLY events.
    pub fly: Delivery,
    /// Event posts not answered 204.
    pub post_errors: usize,
    /// Streams that failed or ended early.
    pub stream_errors: usize,
    /// The first error, for the report.
    pub first_error: Option<String>,
}

/// Entry point of `troupe-bench gateway-client`.
pub fn main(args: &ClientArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(run(args));
    // Open SSE streams are being dropped; do not wait on them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

fn say(line: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

async fn wait_go(stdin: &mut Lines<BufReader<Stdin>>) -> Result<()> {
    match stdin.next_line().await? {
        Some(_) => Ok(()),
        None => bail!("the benchmark closed stdin"),
    }
}

async fn run(args: &ClientArgs) -> Result<()> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if args.fresh {
        // A new connection starts in the kernel's quick-ACK mode; see docs/benchmarks.md
        // ("Gateway") for why that changes the create-to-SSE latency.
        builder = builder.pool_max_idle_per_host(0);
    }
    // Part 3 posts events as a sidecar would; the mesh process it talks to was started
    // with this token (see `sse_nested`), which both inherit from the benchmark.
    if let Ok(token) = std::env::var(troupe_protocol::sidecar_env::GATEWAY_TOKEN) {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the gateway token is not a valid header value")?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    let client = builder.build().context("building the HTTP client")?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let url = args.url.trim_end_matches('/').to_owned();
    let result = match args.job {
        Job::Seq => {
            for i in 0..args.warmup {
                pipeline_task(&client, &url, args, i).await?;
            }
            say("ready")?;
            wait_go(&mut stdin).await?;
            let mut latencies_us = Vec::with_capacity(args.tasks);
            for i in 0..args.tasks {
                let lat = pipeline_task(&client, &url, args, i).await?;
                latencies_us.push(u64::try_from(lat.as_micros()).unwrap_or(u64::MAX));
            }
            serde_json::to_string(&SeqResult { latencies_us })?
        }
        Job::Load => {
            // One create per connection first, so the window does not pay for connects.
            let warm: Vec<_> = (0..args.clients.max(1))
                .map(|i| create(&client, &url, args, i))
                .collect();
            for r in futures::future::join_all(warm).await {
                r?;
            }
            say("ready")?;
            wait_go(&mut stdin).await?;
            serde_json::to_string(&load(&client, &url, args).await)?
        }
        Job::SseOne | Job::SseMany => {
            serde_json::to_string(&subscribers(&client, &url, args, &mut stdin).await?)?
        }
    };
    say(&format!("result {result}"))
}

fn create_body(args: &ClientArgs, seq: usize) -> Result<String> {
    Ok(serde_json::to_string(&json!({
        "actor": args.actor,
        "route_next": args.route_next,
        "payload": {"seq": seq, "text": "hello"},
    }))?)
}

/// `POST /troupe/v1/tasks` (the create path with a route tail); returns the task id.
async fn create(
    client: &reqwest::Client,
    url: &str,
    args: &ClientArgs,
    seq: usize,
) -> Result<String> {
    let resp = client
        .post(format!("{url}/troupe/v1/tasks"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(create_body(args, seq)?)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .context("POST /troupe/v1/tasks")?;
    let status = resp.status();
    let body: Value = resp.json().await.context("reading the create answer")?;
    if status != reqwest::StatusCode::CREATED {
        bail!("create answered {status}: {body}");
    }
    body.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("create answer without id: {body}"))
}

fn status_of(data: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    v.get("status").and_then(Value::as_str).map(str::to_owned)
}

/// One task through the pipeline: create, then its SSE stream until the terminal status.
async fn pipeline_task(
    client: &reqwest::Client,
    url: &str,
    args: &ClientArgs,
    seq: usize,
) -> Result<Duration> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + TASK_TIMEOUT;
    let id = create(client, url, args, seq).await?;
    let mut resp = tokio::time::timeout_at(
        deadline,
        client.get(format!("{url}/api/v1/mesh/{id}/events")).send(),
    )
    .await
    .map_err(|_| anyhow!("task {id}: no SSE answer within {TASK_TIMEOUT:?}"))??;
    if resp.status() != reqwest::StatusCode::OK {
        bail!("task {id}: SSE answered {}", resp.status());
    }
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .map_err(|_| anyhow!("task {id}: no terminal status within {TASK_TIMEOUT:?}"))??;
        let Some(chunk) = chunk else {
            bail!("task {id}: stream ended before a terminal status");
        };
        parser.push(&chunk, &mut events);
        for ev in events.drain(..) {
            if ev.event != "status" {
                continue;
            }
            match status_of(&ev.data).as_deref() {
                Some("succeeded") => {
                    let latency = start.elapsed();
                    // The gateway ends the stream after a terminal status; read that end so
                    // the connection goes back to the pool.
                    while let Ok(Ok(Some(_))) =
                        tokio::time::timeout(Duration::from_secs(1), resp.chunk()).await
                    {
                    }
                    return Ok(latency);
                }
                Some(s @ ("failed" | "canceled")) => bail!("task {id} ended {s}: {}", ev.data),
                _ => {}
            }
        }
    }
}

/// K closed-loop creators until the time or the count runs out.
async fn load(client: &reqwest::Client, url: &str, args: &ClientArgs) -> LoadResult {
    let issued = Arc::new(AtomicUsize::new(0));
    let window = Duration::from_secs_f64(args.duration.max(0.0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.clients.max(1) {
        let client = client.clone();
        let url = url.to_owned();
        let args = args.clone();
        let issued = issued.clone();
        workers.spawn(async move {
            let (mut created, mut errors, mut first_error) = (0usize, 0usize, None);
            while start.elapsed() < window {
                let seq = issued.fetch_add(1, Ordering::Relaxed);
                if seq >= args.max_creates {
                    break;
                }
                match create(&client, &url, &args, seq).await {
                    Ok(_) => created += 1,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (created, errors, first_error)
        });
    }
    let mut out = LoadResult {
        created: 0,
        errors: 0,
        first_error: None,
        wall_s: 0.0,
    };
    while let Some(done) = workers.join_next().await {
        match done {
            Ok((c, e, first)) => {
                out.created += c;
                out.errors += e;
                if out.first_error.is_none() {
                    out.first_error = first;
                }
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out.wall_s = start.elapsed().as_secs_f64();
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Status,
    Fly,
}

#[derive(Debug)]
enum What {
    /// The catch-up event every stream starts with.
    Ready,
    Event(Kind, usize),
    Other,
    Failed(String),
}

#[derive(Debug)]
struct Receipt {
    stream: usize,
    what: What,
    at: Instant,
}

fn classify(ev: &SseEvent) -> What {
    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
        return What::Other;
    };
    let n = match ev.event.as_str() {
        "status" => v
            .get("message")
            .and_then(Value::as_str)
            .and_then(|m| m.strip_prefix("tick "))
            .and_then(|n| n.parse().ok())
            .map(|n| (Kind::Status, n)),
        "fly" => v
            .pointer("/payload/n")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .map(|n| (Kind::Fly, n)),
        _ => None,
    };
    n.map_or(What::Other, |(k, n)| What::Event(k, n))
}

/// One SSE stream: reports its first event as ready, then every tick/FLY it receives.
async fn subscribe(
    client: reqwest::Client,
    url: String,
    stream: usize,
    opening: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Receipt>,
) {
    let fail = |m: String| {
        let _ = tx.send(Receipt {
            stream,
            what: What::Failed(m),
            at: Instant::now(),
        });
    };
    let permit = opening.acquire_owned().await;
    let mut resp = match client.get(&url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => r,
        Ok(r) => return fail(format!("SSE answered {}", r.status())),
        Err(e) => return fail(format!("SSE request failed: {e}")),
    };
    drop(permit);
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut first = true;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let at = Instant::now();
                parser.push(&chunk, &mut events);
                for ev in events.drain(..) {
                    let what = if first { What::Ready } else { classify(&ev) };
                    first = false;
                    if tx.send(Receipt { stream, what, at }).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => return fail("stream ended".into()),
            Err(e) => return fail(format!("stream failed: {e}")),
        }
    }
}

/// Receipts so far, counted as they arrive.
struct Collector {
    rx: mpsc::UnboundedReceiver<Receipt>,
    receipts: Vec<Receipt>,
    counts: HashMap<(Kind, usize), usize>,
    ready: usize,
    failed: usize,
    first_error: Option<String>,
}

impl Collector {
    fn take(&mut self, r: Receipt) {
        match &r.what {
            What::Ready => self.ready += 1,
            What::Event(k, n) => *self.counts.entry((*k, *n)).or_default() += 1,
            What::Other => {}
            What::Failed(m) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| m.clone());
            }
        }
        self.receipts.push(r);
    }

    /// Takes receipts until `done` holds or `deadline` passes; whether `done` held.
    async fn until(&mut self, deadline: Instant, done: impl Fn(&Collector) -> bool) -> bool {
        let deadline = tokio::time::Instant::from_std(deadline);
        while !done(self) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => self.take(r),
                Ok(None) | Err(_) => return done(self),
            }
        }
        true
    }

    fn count(&self, k: Kind, n: usize) -> usize {
        self.counts.get(&(k, n)).copied().unwrap_or(0)
    }
}

fn event_body(kind: Kind, hold: &str, n: usize) -> String {
    let v = match kind {
        Kind::Status => json!({
            "type": "status",
            "status": "running",
            "data": {"prev": [], "curr": hold, "next": ["b"], "message": format!("tick {n}")},
        }),
        Kind::Fly => json!({"type": "fly", "data": {"payload": {"n": n}}}),
    };
    v.to_string()
}

/// Posts event `n` of `kind` to every task in `targets`, `clients` at a time; returns
/// when each post started (by task index) and how many were not answered 204.
async fn post_round(
    client: &reqwest::Client,
    url: &str,
    ids: &[String],
    hold: &str,
    kind: Kind,
    n: usize,
    clients: usize,
) -> (Vec<Option<Instant>>, usize, Option<String>) {
    let body = event_body(kind, hold, n);
    let posts = futures::stream::iter(ids.iter().enumerate())
        .map(|(task, id)| {
            let req = client
                .post(format!("{url}/api/v1/mesh/{id}/events"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .timeout(REQUEST_TIMEOUT);
            async move {
                let at = Instant::now();
                let outcome = match req.send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => Ok(()),
                    Ok(r) => Err(format!("event post answered {}", r.status())),
                    Err(e) => Err(format!("event post failed: {e}")),
                };
                (task, at, outcome)
            }
        })
        .buffer_unordered(clients.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut started = vec![None; ids.len()];
    let (mut errors, mut first) = (0, None);
    for (task, at, outcome) in posts {
        match outcome {
            Ok(()) => started[task] = Some(at),
            Err(e) => {
                errors += 1;
                first.get_or_insert(e);
            }
        }
    }
    (started, errors, first)
}

fn delivery(latencies: Vec<Duration>, expected: usize) -> Delivery {
    let delivered = latencies.len();
    let s = stats::summarize(latencies);
    Delivery {
        expected,
        delivered,
        p50_ms: s.p50.as_secs_f64() * 1000.0,
        p99_ms: s.p99.as_secs_f64() * 1000.0,
        max_ms: s.max.as_secs_f64() * 1000.0,
    }
}

/// Part 3: creates the tasks on the hold actor, opens the streams, posts the events.
async fn subscribers(
    client: &reqwest::Client,
    url: &str,
    args: &ClientArgs,
    stdin: &mut Lines<BufReader<Stdin>>,
) -> Result<SseResult> {
    let n_subs = args.subscribers.max(1);
    let n_tasks = if args.job == Job::SseOne { 1 } else { n_subs };
    let body = serde_json::to_string(&json!({"payload": {"bench": "sse"}}))?;
    let created = futures::stream::iter(0..n_tasks)
        .map(|_| {
            let req = client
                .post(format!("{url}/api/v1/mesh/?actor={}", args.hold))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .timeout(REQUEST_TIMEOUT);
            async move {
                let resp = req.send().await.context("POST /api/v1/mesh/")?;
                let status = resp.status();
                let v: Value = resp.json().await?;
                if status != reqwest::StatusCode::CREATED {
                    bail!("create answered {status}: {v}");
                }
                v.get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("create answer without id: {v}"))
            }
        })
        .buffered(args.clients.max(1))
        .collect::<Vec<_>>()
        .await;
    let ids = created.into_iter().collect::<Result<Vec<String>>>()?;
    say("ready")?;
    wait_go(stdin).await?;

    // Stream i follows task i (one task: all of them follow it).
    let task_of = |stream: usize| if n_tasks == 1 { 0 } else { stream };
    let (tx, rx) = mpsc::unbounded_channel();
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let mut streams = tokio::task::JoinSet::new();
    let mut c = Collector {
        rx,
        receipts: Vec::new(),
        counts: HashMap::new(),
        ready: 0,
        failed: 0,
        first_error: None,
    };
    // Two halves, with a pause between them: the benchmark reads the mesh's RSS at the
    // half, so the second half's growth is the marginal cost of a subscriber, free of
    // one-time costs the first streams pay (blocking-pool threads, buffers, maps).
    let half = n_subs / 2;
    let mut open_s = 0.0;
    for (range, word) in [(0..half, "half"), (half..n_subs, "open")] {
        let start = Instant::now();
        let want = range.end;
        for s in range {
            let id = &ids[task_of(s)];
            streams.spawn(subscribe(
                client.clone(),
                format!("{url}/api/v1/mesh/{id}/events"),
                s,
                opening.clone(),
                tx.clone(),
            ));
        }
        let opened = c
            .until(start + OPEN_TIMEOUT, |c| c.ready + c.failed >= want)
            .await;
        if !opened || c.failed > 0 {
            bail!(
                "{} of {want} streams open after {:?}, {} failed (first: {:?})",
                c.ready,
                start.elapsed(),
                c.failed,
                c.first_error
            );
        }
        open_s += start.elapsed().as_secs_f64();
        say(word)?;
        wait_go(stdin).await?;
    }
    drop(tx);

    // Each round posts one event to every task and waits until every subscriber has it,
    // so a round's latencies are not inflated by the previous round's backlog.
    let mut posted: HashMap<(Kind, usize), Vec<Option<Instant>>> = HashMap::new();
    let (mut post_errors, mut first_error) = (0, None);
    for kind in [Kind::Status, Kind::Fly] {
        for n in 0..args.events {
            let round = Instant::now();
            let ((started, errors, first), _) = tokio::join!(
                post_round(client, url, &ids, &args.hold, kind, n, args.clients),
                c.until(round + DELIVERY_TIMEOUT, |c| c.count(kind, n) >= n_subs),
            );
            post_errors += errors;
            if first_error.is_none() {
                first_error = first;
            }
            posted.insert((kind, n), started);
        }
    }
    let mut lat: HashMap<Kind, Vec<Duration>> = HashMap::new();
    for r in &c.receipts {
        if let What::Event(k, n) = r.what {
            if let Some(Some(at)) = posted.get(&(k, n)).and_then(|v| v.get(task_of(r.stream))) {
                lat.entry(k)
                    .or_default()
                    .push(r.at.saturating_duration_since(*at));
            }
        }
    }
    let expected = n_subs * args.events;
    Ok(SseResult {
        subscribers: n_subs,
        tasks: n_tasks,
        open_s,
        status: delivery(lat.remove(&Kind::Status).unwrap_or_default(), expected),
        fly: delivery(lat.remove(&Kind::Fly).unwrap_or_default(), expected),
        post_errors,
        stream_errors: c.failed,
        first_error: first_error.or(c.first_error),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn classifies_ticks_and_fly_by_number() {
        assert!(matches!(
            classify(&ev(
                "status",
                "{\"status\":\"running\",\"actor\":\"hold\",\"message\":\"tick 7\"}"
            )),
            What::Event(Kind::Status, 7)
        ));
        assert!(matches!(
            classify(&ev("fly", "{\"payload\":{\"n\":3}}")),
            What::Event(Kind::Fly, 3)
        ));
        assert!(matches!(
            classify(&ev("status", "{\"status\":\"pending\"}")),
            What::Other
        ));
        assert!(matches!(classify(&ev("fly", "not json")), What::Other));
    }

    #[test]
    fn event_bodies_round_trip_through_classify() {
        // The gateway sends a FLY event's posted `data` as is, and a status event's
        // message in the task data: what the subscribers parse is what was posted.
        let fly: Value = serde_json::from_str(&event_body(Kind::Fly, "hold", 4)).unwrap();
        assert!(matches!(
            classify(&ev("fly", &fly["data"].to_string())),
            What::Event(Kind::Fly, 4)
        ));
        let st: Value = serde_json::from_str(&event_body(Kind::Status, "hold", 9)).unwrap();
        assert_eq!(st["status"], "running");
        assert!(matches!(
            classify(&ev("status", &st["data"].to_string())),
            What::Event(Kind::Status, 9)
        ));
    }
}
