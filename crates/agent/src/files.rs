//! Sandbox files (`/files/*`, LIST_FILES, READ_FILE): confining requested paths to the
//! executor sandboxes, listing directories like `ls -l`, and reading file ranges.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The most `read` returns at once.
pub const MAX_READ: u64 = 1024 * 1024;

/// Why a files request failed; each maps to an HTTP status.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilesError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
}

impl FilesError {
    pub fn status(&self) -> u16 {
        match self {
            FilesError::BadRequest(_) => 400,
            FilesError::Forbidden(_) => 403,
            FilesError::NotFound(_) => 404,
        }
    }
}

/// Lexical checks: absolute, no `..`, under one of `roots` (as given). Returns the root.
pub fn lexical_root<'a>(requested: &Path, roots: &'a [PathBuf]) -> Result<&'a Path, FilesError> {
    if !requested.is_absolute() {
        return Err(FilesError::BadRequest(format!(
            "Path '{}' is not absolute",
            requested.display()
        )));
    }
    if requested.components().any(|c| c == Component::ParentDir) {
        return Err(FilesError::Forbidden(format!(
            "Path '{}' may not contain '..'",
            requested.display()
        )));
    }
    roots
        .iter()
        .filter(|root| requested.starts_with(root))
        .max_by_key(|root| root.as_os_str().len())
        .map(PathBuf::as_path)
        .ok_or_else(|| {
            FilesError::NotFound(format!(
                "'{}' is not in any sandbox on this agent",
                requested.display()
            ))
        })
}

/// Resolves `requested` to a real path inside one of the sandboxes `roots`, following
/// symlinks, and refuses paths that resolve outside their sandbox.
pub fn confine(requested: &str, roots: &[PathBuf]) -> Result<PathBuf, FilesError> {
    let requested = Path::new(requested.trim_end_matches('/')).to_path_buf();
    let requested = if requested.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        requested
    };
    let root = lexical_root(&requested, roots)?;
    let not_found = || FilesError::NotFound(format!("'{}' does not exist", requested.display()));
    let real_root = root.canonicalize().map_err(|_| not_found())?;
    let real = requested.canonicalize().map_err(|_| not_found())?;
    if !real.starts_with(&real_root) {
        return Err(FilesError::Forbidden(format!(
            "'{}' resolves to a path outside its sandbox",
            requested.display()
        )));
    }
    Ok(real)
}

/// One `ls -l` line.
#[derive(Clone, Debug, PartialEq)]
pub struct FileInfo {
    pub path: String,
    pub nlink: u64,
    pub size: u64,
    pub mtime: i64,
    pub mode: u32,
    pub uid: String,
    pub gid: String,
}

impl FileInfo {
    /// The v0 `/files/browse` entry.
    pub fn to_v0(&self) -> Value {
        json!({"path": self.path, "nlink": self.nlink, "size": self.size, "mtime": self.mtime,
               "mode": mode_string(self.mode), "uid": self.uid, "gid": self.gid})
    }

    /// The v1 `FileInfo`.
    pub fn to_v1(&self) -> Value {
        json!({"path": self.path, "nlink": self.nlink, "size": self.size,
               "mtime": {"nanoseconds": self.mtime.saturating_mul(1_000_000_000)},
               "mode": self.mode, "uid": self.uid, "gid": self.gid})
    }
}

/// `ls -l`'s mode column: `drwxr-xr-x`.
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let mut out = String::with_capacity(10);
    out.push(kind);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (bit, c) in bits {
        out.push(if mode & bit != 0 { c } else { '-' });
    }
    out
}

struct Names(HashMap<(bool, u32), String>);

impl Names {
    fn user(&mut self, uid: u32) -> String {
        self.0
            .entry((true, uid))
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map_or_else(|| uid.to_string(), |u| u.name)
            })
            .clone()
    }
    fn group(&mut self, gid: u32) -> String {
        self.0
            .entry((false, gid))
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map_or_else(|| gid.to_string(), |g| g.name)
            })
            .clone()
    }
}

fn info(shown: String, meta: &std::fs::Metadata, names: &mut Names) -> FileInfo {
    FileInfo {
        path: shown,
        nlink: meta.nlink(),
        size: meta.len(),
        mtime: meta.mtime(),
        mode: meta.permissions().mode(),
        uid: names.user(meta.uid()),
        gid: names.group(meta.gid()),
    }
}

/// Lists a directory (or describes a single file), naming entries under the path the
/// client asked for.
pub fn browse(requested: &str, real: &Path) -> Result<Vec<FileInfo>, FilesError> {
    let mut names = Names(HashMap::new());
    let meta =
        std::fs::metadata(real).map_err(|e| FilesError::NotFound(format!("'{requested}': {e}")))?;
    let shown = requested.trim_end_matches('/');
    if !meta.is_dir() {
        return Ok(vec![info(shown.to_string(), &meta, &mut names)]);
    }
    let entries = std::fs::read_dir(real)
        .map_err(|e| FilesError::Forbidden(format!("'{requested}': {e}")))?;
    let mut out: Vec<FileInfo> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let meta = entry.path().symlink_metadata().ok()?;
            Some(info(
                format!("{shown}/{}", entry.file_name().to_string_lossy()),
                &meta,
                &mut names,
            ))
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// What [`read`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub size: u64,
    pub data: Vec<u8>,
}

/// Reads up to `length` (capped at [`MAX_READ`]) bytes at `offset`. An offset of -1
/// reads nothing and returns the file's size as the offset, as Mesos does.
pub fn read(real: &Path, offset: i64, length: Option<u64>) -> Result<Chunk, FilesError> {
    use std::io::{Read, Seek, SeekFrom};
    let meta = std::fs::metadata(real).map_err(|e| FilesError::NotFound(e.to_string()))?;
    if meta.is_dir() {
        return Err(FilesError::BadRequest(
            "Cannot read a directory".to_string(),
        ));
    }
    let size = meta.len();
    if offset == -1 {
        return Ok(Chunk {
            offset: size,
            size,
            data: Vec::new(),
        });
    }
    let offset = u64::try_from(offset).map_err(|_| {
        FilesError::BadRequest(format!("Negative offset {offset} (only -1 is allowed)"))
    })?;
    if offset >= size {
        return Ok(Chunk {
            offset,
            size,
            data: Vec::new(),
        });
    }
    let want = length.unwrap_or(MAX_READ).min(MAX_READ).min(size - offset);
    let mut file = std::fs::File::open(real).map_err(|e| FilesError::Forbidden(e.to_string()))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| FilesError::BadRequest(e.to_string()))?;
    let mut data = Vec::with_capacity(want as usize);
    file.take(want)
        .read_to_end(&mut data)
        .map_err(|e| FilesError::BadRequest(e.to_string()))?;
    Ok(Chunk { offset, size, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let sb = dir.path().join("runs/c1");
        std::fs::create_dir_all(sb.join("sub")).unwrap();
        std::fs::write(sb.join("stdout"), b"hello world").unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), sb.join("escape")).unwrap();
        std::os::unix::fs::symlink("stdout", sb.join("inside")).unwrap();
        let outside = dir.path().join("secret");
        (dir, sb, outside)
    }

    #[test]
    fn confinement() {
        let (_dir, sb, outside) = sandbox();
        let roots = vec![sb.clone()];
        let s = sb.display().to_string();
        assert!(confine(&format!("{s}/stdout"), &roots).is_ok());
        assert!(confine(&format!("{s}/"), &roots).is_ok());
        assert!(
            confine(&format!("{s}/inside"), &roots).is_ok(),
            "a symlink within the sandbox is fine"
        );
        assert_eq!(
            confine(&format!("{s}/escape"), &roots)
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            confine(&format!("{s}/../../secret"), &roots)
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            confine(&outside.display().to_string(), &roots)
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            confine(&format!("{s}/missing"), &roots)
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(confine("relative/path", &roots).unwrap_err().status(), 400);
        assert_eq!(
            confine(&format!("{s}x/stdout"), &roots)
                .unwrap_err()
                .status(),
            404,
            "a sibling with a shared prefix"
        );
    }

    #[test]
    fn browse_and_read() {
        let (_dir, sb, _) = sandbox();
        let s = sb.display().to_string();
        let list = browse(&s, &sb).unwrap();
        let names: Vec<&str> = list
            .iter()
            .map(|f| f.path.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["escape", "inside", "stdout", "sub"]);
        let stdout = list.iter().find(|f| f.path.ends_with("/stdout")).unwrap();
        assert_eq!(stdout.path, format!("{s}/stdout"));
        assert_eq!(stdout.size, 11);
        assert_eq!(&stdout.to_v0()["mode"].as_str().unwrap()[..1], "-");
        let sub = list.iter().find(|f| f.path.ends_with("/sub")).unwrap();
        assert!(sub.to_v0()["mode"].as_str().unwrap().starts_with('d'));
        let single = browse(&format!("{s}/stdout"), &sb.join("stdout")).unwrap();
        assert_eq!(single.len(), 1);

        let file = sb.join("stdout");
        let chunk = |offset, data: &[u8]| Chunk {
            offset,
            size: 11,
            data: data.to_vec(),
        };
        assert_eq!(read(&file, -1, None).unwrap(), chunk(11, b""));
        assert_eq!(read(&file, 6, None).unwrap(), chunk(6, b"world"));
        assert_eq!(read(&file, 0, Some(5)).unwrap(), chunk(0, b"hello"));
        assert_eq!(read(&file, 50, Some(5)).unwrap(), chunk(50, b""));
        assert_eq!(read(&file, -2, None).unwrap_err().status(), 400);
        assert_eq!(read(&sb, 0, None).unwrap_err().status(), 400);
    }

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(mode_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFLNK | 0o777), "lrwxrwxrwx");
    }
}
