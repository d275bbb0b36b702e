//! Whole-file writes that never leave a half-written output: write to a temporary file in the
//! target's folder, flush, then rename over the target.

use crate::{DataError, Result};
use std::io::{BufWriter, Write};
use std::path::Path;

/// A temporary file in `path`'s folder (created if missing), removed unless persisted.
fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    tempfile::Builder::new()
        .prefix(".dmsrec-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| DataError::io(dir, e))
}

/// Writes `path` through `fill`; on any error the target is untouched.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let tmp = temp_beside(path)?;
    // tempfile creates 0600 files; outputs are ordinary files that others may read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| DataError::io(path, e))?;
    }
    {
        let mut w = BufWriter::new(tmp.as_file());
        fill(&mut w).map_err(|e| DataError::io(path, e))?;
        w.flush().map_err(|e| DataError::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| DataError::io(path, e))?;
    tmp.persist(path).map_err(|e| DataError::io(path, e.error))?;
    Ok(())
}

/// Writes `path` by letting `fill` write a temporary sibling file by name (for writers that only
/// take a path, such as safetensors'), then syncs and renames it; on any error the target is
/// untouched and the temporary file removed.
pub fn write_via_path<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&Path) -> std::io::Result<()>,
{
    let tmp = temp_beside(path)?;
    fill(tmp.path()).map_err(|e| DataError::io(path, e))?;
    let file = std::fs::File::open(tmp.path()).map_err(|e| DataError::io(path, e))?;
    file.sync_all().map_err(|e| DataError::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| DataError::io(path, e))?;
    }
    tmp.persist(path).map_err(|e| DataError::io(path, e.error))?;
    Ok(())
}

/// Atomic write of a byte buffer.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_keeps_old_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        write_bytes_atomic(&p, b"old").unwrap();
        let err = write_atomic(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        }
    }

    #[test]
    fn write_via_path_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.bin");
        write_via_path(&p, |tmp| std::fs::write(tmp, b"new")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let err = write_via_path(&p, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
    }
}
