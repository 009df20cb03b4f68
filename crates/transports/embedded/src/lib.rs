//! Embedded durable queue transport: the default queue of `troupe up`, where the whole
//! mesh runs in one process and every actor queue lives in one store under a state dir
//! (platform.md §1.3, queue names are bare actor names per protocol.md §4).
//!
//! # Design
//!
//! All queues share one append-only log made of segment files. A send encodes its record
//! (with its CRC) outside any lock, appends it to a shared pending buffer and waits. One
//! committer at a time drains everything pending — sends from every queue and any
//! batched ack records — and writes it with a single `write()` (group commit); only then
//! are the messages made receivable and their senders released. With the default
//! [`FsyncPolicy::Never`] the first sender that finds no commit running becomes the
//! committer and writes inline, so a lone sender pays one syscall and no thread hand-off;
//! under load the others pile up behind it and are written together. With
//! [`FsyncPolicy::Always`] a dedicated log thread commits so that no async task blocks
//! on `fdatasync`.
//!
//! The in-memory index keeps, per queue, a ready FIFO, a heap of delayed messages and the
//! in-flight table with visibility deadlines. One timer task sleeps until the earliest
//! due time or visibility deadline of all queues; receivers wait on a per-queue
//! [`tokio::sync::Notify`], so nothing polls. Message bodies of unacked messages are held
//! in memory (this is a development / single-node queue).
//!
//! Acks are not waited for: they are appended to the next commit, or flushed by the log
//! thread after [`EmbeddedOptions::ack_flush_delay`] when no send comes along. A crash
//! can therefore redeliver messages acked in the last few milliseconds (at-least-once).
//! A segment file is deleted once every message in it is acked, it is not the segment
//! being appended to, and no older segment still needs its ack records.
//!
//! Kept in memory only, so reset by a restart: delivery counts, in-flight state (in-flight
//! messages are ready again after a restart) and `nack` delays (a nacked message is ready
//! after a restart; `send_with_delay` due times are persisted and kept).
//!
//! [`Transport::arrivals`] yields a queue name at least once per group commit (or timer
//! wake-up) in which messages became receivable on that queue, not once per message; the
//! channel holds 1024 events, so a slow subscriber sees `Lagged` and should then re-read
//! depths.
//!
//! # Durability and the fsync policy
//!
//! | policy | `send` returns after | survives process crash / `kill -9` | survives power loss / kernel crash |
//! |---|---|---|---|
//! | [`FsyncPolicy::Never`] (default) | `write()` to the OS page cache | yes | no: the last ~30 s of writes may be lost |
//! | [`FsyncPolicy::Interval`] | `write()`; a background `fdatasync` every interval | yes | all but the last interval |
//! | [`FsyncPolicy::Always`] | `fdatasync` of its group commit | yes | yes |
//!
//! `Never` costs one `write()` per group commit (microseconds) and is the right choice for
//! `troupe up`, where the OS outliving the mesh process is what matters. `Always` adds a
//! disk flush (0.1–10 ms depending on the device) to every commit; concurrent senders
//! share it, so throughput stays reasonable with many senders while a single sender's
//! latency is the flush latency.
//!
//! # On-disk format
//!
//! Files `NNNNNNNNNNNNNNNN.seg` (segment id, zero-padded) plus `LOCK` (held with `flock`
//! while a process has the store open). Each segment starts with `TRPQSEG1` and the next
//! sequence number (u64 LE); then records `len:u32 crc32:u32 payload`, where payload is
//! either a send (`0x01 seq:u64 due_ms:u64 qlen:u16 queue body`; `due_ms` = wall-clock
//! ms since the epoch, 0 for immediate) or a batch of acks (`0x02 count:u32 seq:u64…`).
//! Recovery replays segments in order. Bytes that do not parse as records are read
//! around: reading resumes at the next offset whose record verifies, the damaged bytes
//! are copied to `quarantine/{segment}-{offset}-{crc}.damaged` with a WARN naming the offset
//! and size, and only an incomplete record (or zeros) at the very end of a segment is
//! taken for a torn write and truncated.

mod crc;
pub mod fuzzing;
mod log;
mod record;
mod scan;
mod state;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, oneshot, Notify};
use tokio::time::Instant;
use troupe_transport::retry::Outage;
use troupe_transport::{Delivery, QueueDepth, Transport, TransportError};

use crate::record::{EncodedSend, SEG_HEADER_LEN, SEND_FIXED_LEN};
use crate::state::{Effects, Msg, State};

/// When the log is flushed to stable storage (see the crate docs for the trade-off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Never `fdatasync`: `write()` to the OS before `send` returns. Survives process
    /// crashes, not power loss.
    #[default]
    Never,
    /// `fdatasync` every group commit before the senders are released.
    Always,
    /// `fdatasync` in the background at most this long after a write.
    Interval(Duration),
}

/// Settings for [`EmbeddedTransport::open`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Flush policy; default [`FsyncPolicy::Never`].
    pub fsync: FsyncPolicy,
    /// A received, unacked message becomes receivable again after this; default 5 min.
    pub visibility_timeout: Duration,
    /// A segment is closed and a new one started once it reaches this size; default 64 MiB.
    pub segment_size: u64,
    /// Largest accepted body; default 100 MiB (the socket transport's frame limit).
    pub max_message_bytes: usize,
    /// Longest an ack waits for a commit to piggyback on before it is written on its own;
    /// default 5 ms.
    pub ack_flush_delay: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            fsync: FsyncPolicy::Never,
            visibility_timeout: Duration::from_secs(300),
            segment_size: 64 * 1024 * 1024,
            max_message_bytes: 100 * 1024 * 1024,
            ack_flush_delay: Duration::from_millis(5),
        }
    }
}

/// Largest body the record format can hold next to its header and queue name.
const FORMAT_MAX_BODY: usize = u32::MAX as usize - SEND_FIXED_LEN - u16::MAX as usize;
/// Rounds an inline committer runs before handing the rest to the log thread, so a
/// sender is not kept committing for others indefinitely.
const INLINE_ROUNDS: usize = 4;
/// Capacity of the arrivals broadcast channel.
const ARRIVALS_CAPACITY: usize = 1024;

/// Errors from opening the store.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// Reading or writing the state directory failed.
    #[error("embedded queue store: I/O error on {path}: {source}; check that the state directory exists, is writable and the disk is not full")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process has the store open.
    #[error("embedded queue store {0} is in use by another process; stop the other `troupe up` or use a different state directory")]
    Locked(PathBuf),
    /// A `.seg` file is not an embedded-queue segment of a known format version.
    #[error("{path} is not an embedded queue segment of a supported format; move it out of the state directory")]
    BadSegment {
        /// The offending file.
        path: PathBuf,
    },
    /// `open` was called outside a tokio runtime.
    #[error("EmbeddedTransport::open must be called from within a tokio runtime (it starts a timer task)")]
    NoRuntime,
    /// An option is out of range.
    #[error("invalid embedded queue option: {0}")]
    InvalidOption(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_millis() as u64;
    if Duration::from_millis(ms) < d {
        ms + 1
    } else {
        ms
    }
}

/// A send waiting for its group commit.
struct PendingSend {
    queue: Arc<str>,
    seq: u64,
    body: Bytes,
    due: Option<Instant>,
    done: Option<oneshot::Sender<Result<(), TransportError>>>,
}

/// Buffers a committer swaps with the pending ones; reused to avoid reallocating.
#[derive(Default)]
struct Scratch {
    buf: Vec<u8>,
    sends: Vec<PendingSend>,
    acks: Vec<(u64, u64)>,
    done: Vec<oneshot::Sender<Result<(), TransportError>>>,
}

/// Work waiting for the committer or the log thread.
#[derive(Default)]
struct Pending {
    /// Encoded send records, in the order they will be written.
    buf: Vec<u8>,
    sends: Vec<PendingSend>,
    /// (seq, segment) of acked messages whose ack record is not written yet.
    acks: Vec<(u64, u64)>,
    /// A committer is running (inline or on the log thread).
    committing: bool,
    /// Someone waits on `idle_cv` for `committing` to clear.
    idle_waiters: usize,
    spare: Option<Scratch>,
    /// When the log thread must write pending acks on its own.
    ack_deadline: Option<std::time::Instant>,
    /// When the sleeping log thread wakes up on its own (`None`: it is busy or sleeps
    /// until notified). An ack whose deadline is no earlier needs no wake-up call, which
    /// keeps a steady stream of acks from costing a futex round trip each.
    bg_wake_at: Option<std::time::Instant>,
    /// When the log thread must `fdatasync` ([`FsyncPolicy::Interval`]).
    sync_due: Option<std::time::Instant>,
    /// The log thread must run the commit loop (`committing` is already set for it).
    bg_commit: bool,
    /// Segment files to delete, in order.
    deletes: Vec<u64>,
    closed: bool,
    shutdown: bool,
}

/// The file being appended to.
struct Log {
    file: Option<Arc<std::fs::File>>,
    seg_id: u64,
    size: u64,
    /// A failed write may have left a partial record: start a new segment first.
    force_rotate: bool,
    lock: Option<log::DirLock>,
}

struct Inner {
    dir: PathBuf,
    opts: EmbeddedOptions,
    state: Mutex<State>,
    pending: Mutex<Pending>,
    /// Wakes the log thread.
    bg_cv: Condvar,
    /// Signals that `committing` cleared (close and flush wait on it).
    idle_cv: Condvar,
    log: Mutex<Log>,
    next_seq: AtomicU64,
    timer_wake: Arc<Notify>,
    arrivals: broadcast::Sender<Arc<str>>,
    closed: AtomicBool,
    bg_thread: Mutex<Option<JoinHandle<()>>>,
    /// Serialises segment deletion so batches are deleted in the order they were freed.
    delete_lock: Mutex<()>,
    /// Log writes failing (a full disk): logged once per outage.
    write_outage: Outage,
}

/// The embedded durable queue. Share it as `Arc<EmbeddedTransport>` (or
/// `Arc<dyn Transport>`); dropping the last handle flushes and releases the store.
pub struct EmbeddedTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedTransport")
            .field("dir", &self.inner.dir)
            .field("options", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

impl EmbeddedTransport {
    /// Opens (creating if needed) the store in `dir`, replaying its log. Must be called
    /// inside a tokio runtime; does blocking file I/O proportional to the log size.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedTransport, EmbeddedError> {
        if options.visibility_timeout.is_zero() {
            return Err(EmbeddedError::InvalidOption(
                "visibility_timeout must be greater than zero".into(),
            ));
        }
        if options.segment_size < 1024 {
            return Err(EmbeddedError::InvalidOption(
                "segment_size must be at least 1024 bytes".into(),
            ));
        }
        if options.max_message_bytes > FORMAT_MAX_BODY {
            return Err(EmbeddedError::InvalidOption(format!(
                "max_message_bytes must be at most {FORMAT_MAX_BODY}"
            )));
        }
        if let FsyncPolicy::Interval(d) = options.fsync {
            if d.is_zero() {
                return Err(EmbeddedError::InvalidOption(
                    "FsyncPolicy::Interval needs a non-zero interval (or use Always)".into(),
                ));
            }
        }
        let rt = tokio::runtime::Handle::try_current().map_err(|_| EmbeddedError::NoRuntime)?;
        std::fs::create_dir_all(dir).map_err(|e| EmbeddedError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let dir_lock = log::lock_dir(dir)?;
        let rec = log::recover(dir)?;
        let sync = options.fsync != FsyncPolicy::Never;
        let seg_id = rec.last_segment + 1;
        let file = log::create_segment(dir, seg_id, rec.next_seq, sync)?;

        let mut state = State::new(options.visibility_timeout);
        state.segments = rec.segments;
        state.segments.entry(seg_id).or_default().active = true;
        let now = Instant::now();
        let wall = wall_ms();
        let mut fx = Effects::default();
        let recovered = rec.msgs.len();
        let damaged_ranges = rec.damaged_ranges;
        for m in rec.msgs {
            let due = (m.due_ms > wall).then(|| now + Duration::from_millis(m.due_ms - wall));
            let msg = Msg {
                seq: m.seq,
                segment: m.segment,
                body: m.body,
                deliveries: 0,
            };
            state.insert(&m.queue, msg, due, now, &mut fx);
        }
        state.gc(&mut fx);
        for id in &fx.deletes {
            let path = log::segment_path(dir, *id);
            std::fs::remove_file(&path).map_err(|e| EmbeddedError::Io { path, source: e })?;
        }
        if sync && !fx.deletes.is_empty() {
            log::sync_dir(dir)?;
        }
        tracing::debug!(
            dir = %dir.display(),
            recovered,
            damaged_ranges,
            segment = seg_id,
            "embedded queue store opened"
        );

        let (arrivals, _) = broadcast::channel(ARRIVALS_CAPACITY);
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            opts: options,
            state: Mutex::new(state),
            pending: Mutex::new(Pending::default()),
            bg_cv: Condvar::new(),
            idle_cv: Condvar::new(),
            log: Mutex::new(Log {
                file: Some(Arc::new(file)),
                seg_id,
                size: SEG_HEADER_LEN as u64,
                force_rotate: false,
                lock: Some(dir_lock),
            }),
            next_seq: AtomicU64::new(rec.next_seq),
            timer_wake: Arc::new(Notify::new()),
            arrivals,
            closed: AtomicBool::new(false),
            bg_thread: Mutex::new(None),
            delete_lock: Mutex::new(()),
            write_outage: Outage::with_messages(
                "embedded",
                dir.display().to_string(),
                "embedded queue log write failed; sends return an error until writes succeed again (check free disk space)",
                "embedded queue log writes succeed again",
            ),
        });
        let bg_inner = inner.clone();
        let bg_rt = rt.clone();
        let handle = std::thread::Builder::new()
            .name("troupe-embedded-log".into())
            .spawn(move || bg_inner.bg_main(&bg_rt))
            .map_err(|e| EmbeddedError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
        *lock(&inner.bg_thread) = Some(handle);
        rt.spawn(timer_main(Arc::downgrade(&inner), inner.timer_wake.clone()));
        Ok(EmbeddedTransport { inner })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Takes the next ready message of `queue` without waiting.
    pub fn try_receive(&self, queue: &str) -> Result<Option<Delivery>, TransportError> {
        self.inner.try_take(queue)
    }

    /// Sends several bodies to `queue` in one group commit; returns once all are written.
    /// They are receivable in the given order, after each other.
    pub async fn send_batch(&self, queue: &str, bodies: Vec<Bytes>) -> Result<(), TransportError> {
        self.inner.send(queue, bodies, Duration::ZERO).await
    }

    /// Depth of every queue known to the store, sorted by name.
    pub fn queues(&self) -> Vec<(Arc<str>, QueueDepth)> {
        let now = Instant::now();
        let mut fx = Effects::default();
        let out = {
            let mut st = lock(&self.inner.state);
            st.promote_all(now, &mut fx);
            st.all_depths()
        };
        self.inner.apply(fx);
        out
    }

    /// Writes pending ack records now, deletes segments already freed and `fdatasync`s the
    /// log, whatever the policy.
    pub async fn flush(&self) -> Result<(), TransportError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.flush_blocking())
            .await
            .map_err(|e| TransportError::Io {
                queue: String::new(),
                message: format!("flush task failed: {e}"),
            })?
    }
}

impl Drop for EmbeddedTransport {
    fn drop(&mut self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn check_open(&self) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            Err(TransportError::Closed)
        } else {
            Ok(())
        }
    }

    async fn send(
        &self,
        queue: &str,
        bodies: Vec<Bytes>,
        delay: Duration,
    ) -> Result<(), TransportError> {
        self.check_open()?;
        if queue.is_empty() || queue.len() > u16::MAX as usize {
            return Err(TransportError::NoSuchQueue(queue.to_owned()));
        }
        if bodies.is_empty() {
            return Ok(());
        }
        for b in &bodies {
            if b.len() > self.opts.max_message_bytes {
                return Err(TransportError::TooLarge {
                    queue: queue.to_owned(),
                    size: b.len(),
                    limit: self.opts.max_message_bytes,
                });
            }
        }
        let (due, due_ms) = if delay.is_zero() {
            (None, 0)
        } else {
            (Some(Instant::now() + delay), wall_ms() + ceil_ms(delay))
        };
        let n = bodies.len() as u64;
        let first_seq = self.next_seq.fetch_add(n, Ordering::Relaxed);
        // Checksums are computed before taking the lock so that senders only contend for
        // the memcpy into the shared buffer.
        let encoded: Vec<EncodedSend> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| EncodedSend::new(first_seq + i as u64, due_ms, queue.as_bytes(), b))
            .collect();
        let qname: Arc<str> = Arc::from(queue);
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let last = bodies.len() - 1;
        let inline = {
            let mut p = lock(&self.pending);
            if p.closed {
                return Err(TransportError::Closed);
            }
            for (i, (body, enc)) in bodies.into_iter().zip(encoded).enumerate() {
                enc.append(&mut p.buf, queue.as_bytes(), &body);
                p.sends.push(PendingSend {
                    queue: qname.clone(),
                    seq: first_seq + i as u64,
                    body,
                    due,
                    done: if i == last { tx.take() } else { None },
                });
            }
            if p.committing {
                false
            } else {
                p.committing = true;
                if self.opts.fsync == FsyncPolicy::Always {
                    p.bg_commit = true;
                    self.bg_cv.notify_one();
                    false
                } else {
                    true
                }
            }
        };
        if inline {
            self.commit_loop(INLINE_ROUNDS);
        }
        rx.await.map_err(|_| TransportError::Closed)?
    }

    /// Commits pending work until none is left (or `max_rounds` ran, then the log thread
    /// takes over). The caller must have set `committing`.
    fn commit_loop(&self, max_rounds: usize) {
        let mut scratch: Option<Scratch> = None;
        let mut rounds = 0;
        let mut wrote = false;
        loop {
            let mut s = {
                let mut p = lock(&self.pending);
                if wrote {
                    if let FsyncPolicy::Interval(iv) = self.opts.fsync {
                        if p.sync_due.is_none() {
                            p.sync_due = Some(std::time::Instant::now() + iv);
                            self.bg_cv.notify_one();
                        }
                    }
                }
                let mut s = scratch
                    .take()
                    .or_else(|| p.spare.take())
                    .unwrap_or_default();
                if p.buf.is_empty() && p.acks.is_empty() {
                    p.committing = false;
                    p.ack_deadline = None;
                    p.spare = Some(s);
                    if p.idle_waiters > 0 {
                        self.idle_cv.notify_all();
                    }
                    return;
                }
                if rounds >= max_rounds {
                    p.bg_commit = true;
                    p.spare = Some(s);
                    self.bg_cv.notify_one();
                    return;
                }
                std::mem::swap(&mut p.buf, &mut s.buf);
                std::mem::swap(&mut p.sends, &mut s.sends);
                std::mem::swap(&mut p.acks, &mut s.acks);
                p.ack_deadline = None;
                s
            };
            rounds += 1;
            wrote = self.commit_batch(&mut s);
            scratch = Some(s);
        }
    }

    /// Writes one batch, then makes its messages receivable and releases the senders.
    fn commit_batch(&self, s: &mut Scratch) -> bool {
        if !s.acks.is_empty() {
            record::append_acks(&mut s.buf, s.acks.iter().map(|a| a.0));
        }
        let has_sends = !s.sends.is_empty();
        let res = self.write_batch(&s.buf, has_sends);
        let now = Instant::now();
        let mut fx = Effects::default();
        let wrote = match res {
            Ok((seg, rotated)) => {
                {
                    let mut st = lock(&self.state);
                    if let Some(old) = rotated {
                        st.rotated(old, seg, &mut fx);
                    }
                    for &(_, target) in &s.acks {
                        st.add_ack_target(seg, target);
                    }
                    for ps in s.sends.drain(..) {
                        let msg = Msg {
                            seq: ps.seq,
                            segment: seg,
                            body: ps.body,
                            deliveries: 0,
                        };
                        st.insert(&ps.queue, msg, ps.due, now, &mut fx);
                        if let Some(tx) = ps.done {
                            s.done.push(tx);
                        }
                    }
                }
                for tx in s.done.drain(..) {
                    let _ = tx.send(Ok(()));
                }
                self.write_outage.reached();
                true
            }
            Err(e) => {
                // A full disk fails every write until space is freed: one WARN for the
                // outage, not one per batch.
                self.write_outage.failed(&e.to_string());
                for ps in s.sends.drain(..) {
                    if let Some(tx) = ps.done {
                        let _ = tx.send(Err(TransportError::Io {
                            queue: ps.queue.to_string(),
                            message: format!(
                                "writing the embedded queue log in {} failed: {e}",
                                self.dir.display()
                            ),
                        }));
                    }
                }
                false
            }
        };
        s.acks.clear();
        s.buf.clear();
        if s.buf.capacity() > 16 << 20 {
            s.buf.shrink_to(1 << 20);
        }
        self.apply(fx);
        wrote
    }

    /// Appends `buf` to the active segment, rotating first when it is full.
    /// Returns the segment written and, after a rotation, the previous one.
    fn write_batch(&self, buf: &[u8], has_sends: bool) -> std::io::Result<(u64, Option<u64>)> {
        use std::io::Write;
        let mut log = lock(&self.log);
        let Some(mut file) = log.file.clone() else {
            return Err(std::io::Error::other("the store is closed"));
        };
        let sync = self.opts.fsync != FsyncPolicy::Never;
        let mut rotated = None;
        if log.force_rotate
            || (log.size >= self.opts.segment_size && log.size > SEG_HEADER_LEN as u64)
        {
            if sync {
                file.sync_data()?;
            }
            let old = log.seg_id;
            let new_id = old + 1;
            let f = log::create_segment(
                &self.dir,
                new_id,
                self.next_seq.load(Ordering::Relaxed),
                sync,
            )
            .map_err(|e| match e {
                EmbeddedError::Io { source, .. } => source,
                other => std::io::Error::other(other.to_string()),
            })?;
            file = Arc::new(f);
            log.file = Some(file.clone());
            log.seg_id = new_id;
            log.size = SEG_HEADER_LEN as u64;
            log.force_rotate = false;
            rotated = Some(old);
        }
        if let Err(e) = (&*file).write_all(buf) {
            if file.set_len(log.size).is_err() {
                log.force_rotate = true;
            }
            return Err(e);
        }
        log.size += buf.len() as u64;
        if has_sends && self.opts.fsync == FsyncPolicy::Always {
            file.sync_data()?;
        }
        Ok((log.seg_id, rotated))
    }

    /// Acts on what a state change asked for, outside the state lock.
    fn apply(&self, fx: Effects) {
        if fx.wake_timer {
            self.timer_wake.notify_one();
        }
        if !fx.arrived.is_empty() && self.arrivals.receiver_count() > 0 {
            for q in fx.arrived {
                let _ = self.arrivals.send(q);
            }
        }
        if !fx.deletes.is_empty() {
            let mut p = lock(&self.pending);
            p.deletes.extend(fx.deletes);
            self.bg_cv.notify_one();
        }
    }

    fn try_take(&self, queue: &str) -> Result<Option<Delivery>, TransportError> {
        let now = Instant::now();
        let mut fx = Effects::default();
        let d = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(TransportError::Closed);
            }
            st.promote_queue(queue, now, &mut fx);
            st.take_ready(queue, now, &mut fx)
        };
        self.apply(fx);
        Ok(d)
    }

    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError> {
        if let Some(d) = self.try_take(queue)? {
            return Ok(d);
        }
        let notify = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(TransportError::Closed);
            }
            st.queue_mut(queue).notify.clone()
        };
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Checked after registering, so a message inserted in between still wakes us;
            // taking it happens in one synchronous step, so dropping this future at the
            // await below never loses a message.
            if let Some(d) = self.try_take(queue)? {
                return Ok(d);
            }
            notified.await;
        }
    }

    fn ack(&self, d: &Delivery) -> Result<(), TransportError> {
        let mut fx = Effects::default();
        let (seq, seg) = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(TransportError::Closed);
            }
            st.ack(&d.queue, &d.handle, &mut fx)
                .map_err(|_| TransportError::UnknownDelivery(d.queue.to_string()))?
        };
        self.apply(fx);
        let mut p = lock(&self.pending);
        p.acks.push((seq, seg));
        if !p.committing && p.ack_deadline.is_none() {
            let deadline = std::time::Instant::now() + self.opts.ack_flush_delay;
            p.ack_deadline = Some(deadline);
            if p.bg_wake_at.is_none_or(|wake| wake > deadline) {
                self.bg_cv.notify_one();
            }
        }
        Ok(())
    }

    /// Drops every message of `queue` and writes their ack records durably (the log is
    /// flushed and synced), so a restart does not bring them back.
    async fn purge(self: &Arc<Self>, queue: &str) -> Result<(), TransportError> {
        let mut fx = Effects::default();
        let acks = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(TransportError::Closed);
            }
            st.purge(queue, &mut fx)
        };
        self.apply(fx);
        if acks.is_empty() {
            return Ok(());
        }
        lock(&self.pending).acks.extend(acks);
        let inner = self.clone();
        tokio::task::spawn_blocking(move || inner.flush_blocking())
            .await
            .map_err(|e| TransportError::Io {
                queue: queue.to_owned(),
                message: format!("flush task failed: {e}"),
            })?
    }

    fn nack(&self, d: &Delivery, delay: Duration) -> Result<(), TransportError> {
        let now = Instant::now();
        let mut fx = Effects::default();
        {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(TransportError::Closed);
            }
            st.nack(&d.queue, &d.handle, delay, now, &mut fx)
                .map_err(|_| TransportError::UnknownDelivery(d.queue.to_string()))?;
        }
        self.apply(fx);
        Ok(())
    }

    fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        let now = Instant::now();
        let mut fx = Effects::default();
        let d = {
            let mut st = lock(&self.state);
            if st.closed {
                return Err(TransportError::Closed);
            }
            st.promote_queue(queue, now, &mut fx);
            st.depth(queue)
        };
        self.apply(fx);
        Ok(d)
    }

    /// Waits until no commit runs, then commits everything pending on this thread.
    fn commit_all_blocking(&self) {
        {
            let mut p = lock(&self.pending);
            while p.committing {
                p.idle_waiters += 1;
                p = self.idle_cv.wait(p).unwrap_or_else(PoisonError::into_inner);
                p.idle_waiters -= 1;
            }
            p.committing = true;
        }
        self.commit_loop(usize::MAX);
    }

    fn sync_log(&self) -> std::io::Result<()> {
        let file = lock(&self.log).file.clone();
        match file {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    fn flush_blocking(&self) -> Result<(), TransportError> {
        self.check_open()?;
        self.commit_all_blocking();
        self.run_deletes();
        self.sync_log().map_err(|e| TransportError::Io {
            queue: String::new(),
            message: format!(
                "fdatasync of the embedded queue log in {} failed: {e}",
                self.dir.display()
            ),
        })
    }

    /// Closes the store: rejects new calls, writes everything pending, deletes freed
    /// segments, stops the log thread and releases the directory lock.
    fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut st = lock(&self.state);
            st.closed = true;
            st.wake_all();
        }
        self.timer_wake.notify_one();
        lock(&self.pending).closed = true;
        self.commit_all_blocking();
        if self.opts.fsync != FsyncPolicy::Never {
            if let Err(e) = self.sync_log() {
                tracing::error!(error = %e, "final fdatasync of the embedded queue log failed");
            }
        }
        {
            let mut p = lock(&self.pending);
            p.shutdown = true;
            self.bg_cv.notify_one();
        }
        if let Some(h) = lock(&self.bg_thread).take() {
            let _ = h.join();
        }
        let mut log = lock(&self.log);
        log.file = None;
        log.lock = None;
    }

    /// The log thread: commits for [`FsyncPolicy::Always`] and for inline committers that
    /// handed over, writes acks no send picked up, runs interval syncs, deletes segments.
    fn bg_main(&self, rt: &tokio::runtime::Handle) {
        // Inside the runtime context tokio's clock (possibly paused in tests) is the one
        // used for due times computed here.
        let _guard = rt.enter();
        let mut p = lock(&self.pending);
        loop {
            let now = std::time::Instant::now();
            if !p.deletes.is_empty() {
                drop(p);
                self.run_deletes();
                p = lock(&self.pending);
                continue;
            }
            if p.bg_commit {
                p.bg_commit = false;
                drop(p);
                self.commit_loop(usize::MAX);
                p = lock(&self.pending);
                continue;
            }
            let mut timeout: Option<Duration> = None;
            if let Some(dl) = p.ack_deadline {
                if dl <= now {
                    p.ack_deadline = None;
                    if !p.committing {
                        p.committing = true;
                        drop(p);
                        self.commit_loop(usize::MAX);
                        p = lock(&self.pending);
                        continue;
                    }
                } else {
                    timeout = Some(dl - now);
                }
            }
            if let Some(dl) = p.sync_due {
                if dl <= now {
                    p.sync_due = None;
                    drop(p);
                    if let Err(e) = self.sync_log() {
                        tracing::error!(error = %e, "fdatasync of the embedded queue log failed");
                    }
                    p = lock(&self.pending);
                    continue;
                }
                let t = dl - now;
                timeout = Some(timeout.map_or(t, |x| x.min(t)));
            }
            if p.shutdown {
                return;
            }
            p.bg_wake_at = timeout.map(|t| now + t);
            p = match timeout {
                Some(t) => {
                    self.bg_cv
                        .wait_timeout(p, t)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self.bg_cv.wait(p).unwrap_or_else(PoisonError::into_inner),
            };
            p.bg_wake_at = None;
        }
    }

    /// Deletes the segments freed so far, in the order they were freed: an older segment
    /// must go before a newer one whose acks protect it.
    fn run_deletes(&self) {
        let _serial = lock(&self.delete_lock);
        let ids = std::mem::take(&mut lock(&self.pending).deletes);
        for id in ids {
            let path = log::segment_path(&self.dir, id);
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::debug!(segment = %path.display(), "deleted fully acked segment"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    segment = %path.display(),
                    error = %e,
                    "could not delete a fully acked segment; it will be retried on the next open"
                ),
            }
        }
    }
}

/// Promotes due delayed messages and expired deliveries at exactly the earliest deadline.
async fn timer_main(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            let mut fx = Effects::default();
            let next = lock(&inner.state).promote_all(now, &mut fx);
            inner.apply(fx);
            next
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

#[async_trait]
impl Transport for EmbeddedTransport {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn queue_name(&self, actor: &str) -> String {
        actor.to_owned()
    }

    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError> {
        self.inner.receive(queue).await
    }

    async fn send(&self, queue: &str, body: Bytes) -> Result<(), TransportError> {
        self.inner.send(queue, vec![body], Duration::ZERO).await
    }

    async fn send_with_delay(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        self.inner.send(queue, vec![body], delay).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        self.inner.ack(delivery)
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), TransportError> {
        self.inner.nack(delivery, delay)
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        self.inner.depth(queue)
    }

    /// Queues exist from their first send; nothing to create.
    async fn create_queue(&self, _queue: &str) -> Result<(), TransportError> {
        self.inner.check_open()
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.inner.purge(queue).await
    }

    fn arrivals(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        Some(self.inner.arrivals.subscribe())
    }

    async fn close(&self) {
        let inner = self.inner.clone();
        // Closing joins the log thread and may write; keep it off the async workers.
        if tokio::task::spawn_blocking(move || inner.shutdown())
            .await
            .is_err()
        {
            self.inner.shutdown();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::FRAME_HEADER_LEN;

    #[test]
    fn ceil_ms_rounds_up() {
        assert_eq!(ceil_ms(Duration::from_micros(1)), 1);
        assert_eq!(ceil_ms(Duration::from_millis(5)), 5);
        assert_eq!(ceil_ms(Duration::from_micros(5001)), 6);
    }

    #[test]
    fn frame_overhead_constants_match_encoder() {
        let e = EncodedSend::new(1, 0, b"abc", b"hello");
        assert_eq!(e.frame_len(), FRAME_HEADER_LEN + SEND_FIXED_LEN + 3 + 5);
    }

    #[test]
    fn open_outside_runtime_fails() {
        let dir = tempfile::tempdir().unwrap();
        let err = EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap_err();
        assert!(matches!(err, EmbeddedError::NoRuntime));
    }
}
