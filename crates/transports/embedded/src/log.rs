//! Segment files: naming, creation, directory lock and crash recovery.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::record::{self, Parsed, Record, SEG_HEADER_LEN, SEG_MAGIC};
use crate::state::SegInfo;
use crate::EmbeddedError;

const SEG_EXT: &str = "seg";
const LOCK_FILE: &str = "LOCK";

/// Path of segment `id`; zero-padded so a directory listing sorts in log order.
pub(crate) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.{SEG_EXT}"))
}

fn io_err(path: &Path, source: std::io::Error) -> EmbeddedError {
    EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Segment ids present in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, EmbeddedError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if stem.len() == 16 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(id) = stem.parse::<u64>() {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Creates segment `id` with its header; `sync` also makes the file and its directory
/// entry durable.
pub(crate) fn create_segment(
    dir: &Path,
    id: u64,
    next_seq: u64,
    sync: bool,
) -> Result<File, EmbeddedError> {
    let path = segment_path(dir, id);
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    f.write_all(&record::segment_header(next_seq))
        .map_err(|e| io_err(&path, e))?;
    if sync {
        f.sync_data().map_err(|e| io_err(&path, e))?;
        sync_dir(dir)?;
    }
    Ok(f)
}

/// Makes directory entries (created or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), EmbeddedError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Exclusive lock on the store; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct DirLock {
    #[cfg(unix)]
    _lock: nix::fcntl::Flock<File>,
    #[cfg(not(unix))]
    _file: File,
}

/// Takes the store lock so two processes never append to the same log.
pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock, EmbeddedError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    #[cfg(unix)]
    {
        use nix::fcntl::{Flock, FlockArg};
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(DirLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                Err(EmbeddedError::Locked(dir.to_path_buf()))
            }
            Err((_, errno)) => Err(io_err(&path, std::io::Error::from(errno))),
        }
    }
    #[cfg(not(unix))]
    Ok(DirLock { _file: file })
}

/// A message that survived recovery, in log order.
#[derive(Debug)]
pub(crate) struct RecoveredMsg {
    pub(crate) seq: u64,
    pub(crate) segment: u64,
    pub(crate) queue: Arc<str>,
    pub(crate) body: Bytes,
    pub(crate) due_ms: u64,
}

/// Everything recovery rebuilt from the segment files.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub(crate) msgs: Vec<RecoveredMsg>,
    pub(crate) segments: BTreeMap<u64, SegInfo>,
    /// First sequence number that no record uses.
    pub(crate) next_seq: u64,
    /// Highest segment id found (0: none).
    pub(crate) last_segment: u64,
}

/// Replays every segment in order: sends add messages, acks remove them.
///
/// A damaged or torn record ends its segment: in the newest segment this is the expected
/// result of a crash mid-write and the tail is truncated away; in an older segment it
/// means damage, logged, and the rest of that segment is skipped.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, EmbeddedError> {
    let ids = list_segments(dir)?;
    let mut out = Recovered {
        next_seq: 1,
        ..Recovered::default()
    };
    let mut slots: Vec<Option<RecoveredMsg>> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let last = ids.last().copied();
    for &id in &ids {
        out.last_segment = id;
        let path = segment_path(dir, id);
        let data = fs::read(&path).map_err(|e| io_err(&path, e))?;
        let mut info = SegInfo::default();
        if data.len() < SEG_HEADER_LEN {
            // Crash while the segment was being created: it holds nothing.
            if !SEG_MAGIC.starts_with(&data[..data.len().min(SEG_MAGIC.len())]) {
                return Err(EmbeddedError::BadSegment { path });
            }
            out.segments.insert(id, info);
            continue;
        }
        if &data[..8] != SEG_MAGIC {
            return Err(EmbeddedError::BadSegment { path });
        }
        let mut hdr = [0u8; 8];
        hdr.copy_from_slice(&data[8..16]);
        out.next_seq = out.next_seq.max(u64::from_le_bytes(hdr));
        let mut off = SEG_HEADER_LEN;
        loop {
            match record::parse(&data[off..]) {
                Parsed::End => break,
                Parsed::Torn(reason) => {
                    if Some(id) == last {
                        tracing::warn!(
                            segment = %path.display(),
                            offset = off,
                            reason,
                            "dropping torn tail of the embedded queue log (expected after a crash)"
                        );
                        truncate(&path, off as u64)?;
                    } else {
                        tracing::error!(
                            segment = %path.display(),
                            offset = off,
                            reason,
                            "damaged record in the embedded queue log; skipping the rest of this segment"
                        );
                    }
                    break;
                }
                Parsed::Record(rec, used) => {
                    off += used;
                    match rec {
                        Record::Send {
                            seq,
                            due_ms,
                            queue,
                            body,
                        } => {
                            out.next_seq = out.next_seq.max(seq.saturating_add(1));
                            let queue = match names.get(queue) {
                                Some(q) => q.clone(),
                                None => {
                                    let q: Arc<str> = Arc::from(queue);
                                    names.insert(queue.to_owned(), q.clone());
                                    q
                                }
                            };
                            index.insert(seq, slots.len());
                            slots.push(Some(RecoveredMsg {
                                seq,
                                segment: id,
                                queue,
                                body: Bytes::copy_from_slice(body),
                                due_ms,
                            }));
                        }
                        Record::Ack(raw) => {
                            for seq in record::ack_seqs(raw) {
                                out.next_seq = out.next_seq.max(seq.saturating_add(1));
                                let Some(i) = index.remove(&seq) else {
                                    continue;
                                };
                                if let Some(m) = slots[i].take() {
                                    if m.segment != id {
                                        info.ack_targets.insert(m.segment);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out.segments.insert(id, info);
    }
    out.msgs = slots.into_iter().flatten().collect();
    Ok(out)
}

fn truncate(path: &Path, len: u64) -> Result<(), EmbeddedError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.set_len(len).map_err(|e| io_err(path, e))?;
    f.sync_data().map_err(|e| io_err(path, e))
}
