//! Segment files: naming, creation, directory lock and crash recovery.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::crc::Crc32;
use crate::record::{self, Record, SEG_HEADER_LEN, SEG_MAGIC};
use crate::scan::{self, Item};
use crate::state::SegInfo;
use crate::EmbeddedError;

const SEG_EXT: &str = "seg";
const LOCK_FILE: &str = "LOCK";
/// Folder (inside the store) for bytes recovery could not read as records.
pub(crate) const QUARANTINE_DIR: &str = "quarantine";

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
    /// Damaged ranges read around (copied to quarantine).
    pub(crate) damaged_ranges: usize,
}

/// Replays every segment in order: sends add messages, acks remove them.
///
/// Damage is read around ([`crate::scan`]): the bytes that do not parse are copied to
/// `quarantine/` and reading resumes at the next record that verifies, so one bad
/// byte costs only the record it is in. A torn write at the end of a segment (the
/// expected result of a crash mid-write) is truncated away.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, EmbeddedError> {
    let ids = list_segments(dir)?;
    let mut out = Recovered {
        next_seq: 1,
        ..Recovered::default()
    };
    let mut slots: Vec<Option<RecoveredMsg>> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
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
        let mut damage = Damage::default();
        for item in scan::scan(&data, SEG_HEADER_LEN) {
            let rec = match item {
                Item::Record { record, .. } => record,
                Item::Damaged { at, len, reason } => {
                    damage.quarantine(dir, &path, id, &data[at..at + len], at, reason);
                    continue;
                }
                Item::Torn { at, reason } => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = at,
                        bytes = data.len() - at,
                        reason,
                        "dropping torn tail of the embedded queue log (expected after a crash)"
                    );
                    truncate(&path, at as u64)?;
                    break;
                }
            };
            if damage.ranges > 0 {
                damage.records_after += 1;
            }
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
        if damage.ranges > 0 {
            tracing::warn!(
                segment = %path.display(),
                damaged_ranges = damage.ranges,
                damaged_bytes = damage.bytes,
                records_after_damage = damage.records_after,
                quarantine = %dir.join(QUARANTINE_DIR).display(),
                "embedded queue segment read around damage: the records in the damaged bytes are lost (their bytes are in quarantine), every intact record is kept"
            );
        }
        out.damaged_ranges += damage.ranges;
        out.segments.insert(id, info);
    }
    out.msgs = slots.into_iter().flatten().collect();
    Ok(out)
}

/// Damage found in one segment.
#[derive(Debug, Default)]
struct Damage {
    ranges: usize,
    bytes: usize,
    /// Records read after the first damaged range (what a reader that stopped at the
    /// damage would have lost).
    records_after: usize,
}

impl Damage {
    /// Copies one damaged range to `quarantine/` and logs it. The copy is named by
    /// segment, offset and checksum, so the next open does not copy it again while the
    /// segment lives (and a later segment reusing the id does not overwrite it); failing
    /// to write it only loses the copy.
    fn quarantine(
        &mut self,
        dir: &Path,
        segment: &Path,
        id: u64,
        bytes: &[u8],
        offset: usize,
        reason: &str,
    ) {
        self.ranges += 1;
        self.bytes += bytes.len();
        let qdir = dir.join(QUARANTINE_DIR);
        let mut crc = Crc32::new();
        crc.update(bytes);
        let qpath = qdir.join(format!(
            "{id:016}-{offset:010}-{:08x}.damaged",
            crc.finish()
        ));
        let already = fs::metadata(&qpath).is_ok_and(|m| m.len() == bytes.len() as u64);
        let saved = if already {
            Ok(())
        } else {
            fs::create_dir_all(&qdir).and_then(|()| fs::write(&qpath, bytes))
        };
        match saved {
            Ok(()) => tracing::warn!(
                segment = %segment.display(),
                offset,
                bytes = bytes.len(),
                reason,
                quarantine = %qpath.display(),
                "damaged bytes in the embedded queue log copied to quarantine; reading resumes at the next intact record"
            ),
            Err(e) => tracing::error!(
                segment = %segment.display(),
                offset,
                bytes = bytes.len(),
                reason,
                quarantine = %qpath.display(),
                error = %e,
                "damaged bytes in the embedded queue log could not be copied to quarantine; reading resumes at the next intact record"
            ),
        }
    }
}

fn truncate(path: &Path, len: u64) -> Result<(), EmbeddedError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.set_len(len).map_err(|e| io_err(path, e))?;
    f.sync_data().map_err(|e| io_err(path, e))
}
