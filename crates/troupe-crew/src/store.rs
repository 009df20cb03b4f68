//! File storage under the persistence mount: key derivation and atomic writes.

use std::io;
use std::path::{Path, PathBuf};

/// `basename(id)` as Python's `os.path.basename` computes it (the part after the last
/// `/`), so `../x` stays inside its folder. `None` when nothing usable is left (empty,
/// or a NUL byte that no filesystem accepts).
pub(crate) fn key(id: &str) -> Option<&str> {
    let base = id.rsplit('/').next().unwrap_or(id);
    (!base.is_empty() && !base.contains('\0')).then_some(base)
}

/// `{mount}/{folder}/{basename(id)}.json`.
pub(crate) fn file_path(mount: &Path, folder: &str, id: &str) -> Option<PathBuf> {
    key(id).map(|k| mount.join(folder).join(format!("{k}.json")))
}

/// Writes `bytes` to `path` so that readers (and a process crash) see either the old
/// file or the complete new one: write a temp file in the same folder, then rename.
/// No fsync: like the embedded queue's default policy, this survives a crash of the
/// process but not a power loss. Used for state that is read back (paused tasks).
pub(crate) async fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    writer::submit(path, bytes, true).await
}

/// Writes a terminal result file in place. A crash mid-write can only tear the file of
/// a message that was not acked yet, and its redelivery rewrites it; skipping the temp
/// file and rename halves the metadata work of the hottest crew path (x-sink writes one
/// file per finished task).
pub(crate) async fn write_result(path: &Path, bytes: &[u8]) -> io::Result<()> {
    writer::submit(path, bytes, false).await
}

/// The blocking form of [`write_atomic`] (`atomic`) or [`write_result`], for callers that
/// already run on a blocking thread.
pub(crate) fn write_blocking(path: &Path, bytes: &[u8], atomic: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no folder"))?;
    let with_dir = |f: &dyn Fn() -> io::Result<()>| match f() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            f()
        }
        other => other,
    };
    if !atomic {
        return with_dir(&|| std::fs::write(path, bytes));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Dot-prefixed so listings of `*.json` never pick up a half-written file.
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result =
        with_dir(&|| std::fs::write(&tmp, bytes)).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` with `bytes` only if it does not exist yet; `Ok(false)` when it did.
/// Atomic and exclusive at once: the content goes to a temp file that is then hard-linked
/// to `path` (a link never replaces a file), so no reader sees a half-written claim and
/// of two racing creators exactly one wins. Blocking.
pub(crate) fn create_exclusive_blocking(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no folder"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = match std::fs::write(&tmp, bytes) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(&tmp, bytes)
        }
        other => other,
    };
    let result = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    });
    let _ = std::fs::remove_file(&tmp);
    result
}

/// One long-lived thread does the crew's file writes: cheaper than a blocking-pool
/// hand-off per file, and writes to one folder do not contend with each other.
mod writer {
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;
    use std::sync::{Mutex, OnceLock};

    use tokio::sync::oneshot;

    struct Job {
        path: PathBuf,
        bytes: Vec<u8>,
        atomic: bool,
        done: oneshot::Sender<io::Result<()>>,
    }

    static QUEUE: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

    fn queue() -> io::Result<mpsc::Sender<Job>> {
        let q = QUEUE.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let spawned = std::thread::Builder::new()
                .name("troupe-crew-writer".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        let r = super::write_blocking(&job.path, &job.bytes, job.atomic);
                        let _ = job.done.send(r);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the crew writer thread");
            }
            Mutex::new(tx)
        });
        q.lock()
            .map(|tx| tx.clone())
            .map_err(|_| io::Error::other("crew writer queue poisoned"))
    }

    pub(super) async fn submit(path: &Path, bytes: &[u8], atomic: bool) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        let job = Job {
            path: path.to_path_buf(),
            bytes: bytes.to_vec(),
            atomic,
            done,
        };
        queue()?
            .send(job)
            .map_err(|_| io::Error::other("crew writer thread is not running"))?;
        wait.await
            .map_err(|_| io::Error::other("crew writer thread stopped"))?
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn key_is_the_basename() {
        assert_eq!(key("abc"), Some("abc"));
        assert_eq!(key("../x"), Some("x"));
        assert_eq!(key("/etc/passwd"), Some("passwd"));
        assert_eq!(key("a/b/../../c"), Some("c"));
        // Python keeps these; with `.json` appended they stay inside the folder.
        assert_eq!(key(".."), Some(".."));
        assert_eq!(key(""), None);
        assert_eq!(key("dir/"), None);
        assert_eq!(key("a\0b"), None);
    }

    #[test]
    fn file_path_stays_in_folder() {
        let mount = Path::new("/m");
        assert_eq!(
            file_path(mount, "failed", "../../etc/x"),
            Some(PathBuf::from("/m/failed/x.json"))
        );
        assert_eq!(
            file_path(mount, "paused", ".."),
            Some(PathBuf::from("/m/paused/...json"))
        );
        assert_eq!(file_path(mount, "paused", ""), None);
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn atomic_write_creates_folders_replaces_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/t.json");
        write_atomic(&path, b"first").await.unwrap();
        write_atomic(&path, b"second").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(entries(&tmp.path().join("a/b")), vec!["t.json"]);
    }

    #[tokio::test]
    async fn failed_write_keeps_the_old_file_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        // The target is a non-empty folder, so the rename fails after the temp was written.
        let path = tmp.path().join("t.json");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), b"old").unwrap();
        assert!(write_atomic(&path, b"new").await.is_err());
        assert_eq!(entries(tmp.path()), vec!["t.json"]);
        assert_eq!(std::fs::read(path.join("keep")).unwrap(), b"old");
    }

    #[test]
    fn exclusive_create_wins_once_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("o/complete");
        assert!(create_exclusive_blocking(&path, b"first").unwrap());
        assert!(!create_exclusive_blocking(&path, b"second").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(entries(&tmp.path().join("o")), vec!["complete"]);
    }

    #[tokio::test]
    async fn unwritable_folder_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), b"x").unwrap();
        let err = write_atomic(&tmp.path().join("file/sub/t.json"), b"{}").await;
        assert!(err.is_err());
    }
}
