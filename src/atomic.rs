//! Replacing a file whole: readers see the old contents or the new, never a mix or a truncation.
//!
//! Saved sessions and the solo-peak cache are both rewritten in place, and two processes (two
//! `perseus probe` runs, say) may do it at once. Each write therefore goes to its own uniquely named
//! temporary file beside the target (same directory, so the rename cannot cross file systems), is
//! synced, and is renamed over the target by [`tempfile::NamedTempFile::persist`]; the last rename
//! wins and every reader in between sees one whole version.

use std::io::{self, Write};
use std::path::Path;

/// Writes `contents` to `path` atomically, creating missing parent directories.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // The mode `File::create` would use (less the umask), not tempfile's private 0600: the result
    // is an ordinary file the user asked for.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable where the platform allows syncing a directory.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("f.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f.txt"]);
    }

    #[test]
    fn concurrent_writers_all_succeed_and_readers_only_see_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        // Large enough that a torn write would show; each writer's bytes are all one letter.
        let contents: Vec<Vec<u8>> = (b'a'..=b'd').map(|c| vec![c; 256 * 1024]).collect();
        write_atomic(&path, &contents[0]).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let got = std::fs::read(&path).unwrap();
                    assert!(
                        contents.contains(&got),
                        "a torn file of {} bytes",
                        got.len()
                    );
                    reads += 1;
                }
                reads
            });
            let writers: Vec<_> = contents
                .iter()
                .map(|c| s.spawn(|| (0..25).try_for_each(|_| write_atomic(&path, c))))
                .collect();
            for w in writers {
                w.join().unwrap().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
