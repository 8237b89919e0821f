//! The executor API on a Unix domain socket (Mesos's `--http_executor_domain_sockets`):
//! where the socket lives, binding it, and serving `/api/v1/executor` on it.
//!
//! Executors the agent starts on the host's filesystem get its path as
//! `MESOS_DOMAIN_SOCKET`; executors that know the variable (Meseta's) talk HTTP over it
//! instead of TCP, the others keep using `MESOS_AGENT_ENDPOINT`. Every status update goes
//! over this link and back, and on loopback TCP each message costs about twice what it
//! costs on a Unix socket (connection set-up and teardown even more).

use crate::http;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;
use tokio::net::UnixListener;
use tokio::sync::watch;

/// The socket's file name in the work directory, when `--domain-socket-location` is not
/// given.
const DEFAULT_NAME: &str = "agent.sock";
/// The longest path a socket address holds (`sun_path` less its terminating NUL).
pub const MAX_PATH_BYTES: usize = 107;

/// Why the socket cannot be set up.
#[derive(Debug, Error)]
pub enum SocketError {
    #[error("the domain socket path {path} is {len} bytes long; a Unix socket's path holds at most {MAX_PATH_BYTES}")]
    TooLong { path: PathBuf, len: usize },
    #[error("{path} exists and is not a socket; not replacing it")]
    NotASocket { path: PathBuf },
    #[error("cannot bind the domain socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the socket goes: the location given, else `agent.sock` in the work directory.
/// `None` (with a warning) when the default path is too long for a socket address, so
/// that a deep work directory keeps working over TCP; a location given explicitly must
/// fit.
pub fn location(given: Option<&Path>, work_dir: &Path) -> Result<Option<PathBuf>, SocketError> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => work_dir.join(DEFAULT_NAME),
    };
    let len = path.as_os_str().len();
    if len <= MAX_PATH_BYTES {
        return Ok(Some(path));
    }
    if given.is_some() {
        return Err(SocketError::TooLong { path, len });
    }
    tracing::warn!(
        "executors talk to the agent over TCP: the domain socket's default path {} is {len} bytes long (at most {MAX_PATH_BYTES}); give --domain-socket-location a shorter one",
        path.display()
    );
    Ok(None)
}

/// Binds the socket at `path`, replacing a socket left by an earlier run, open to every
/// user (executors may run as other users; their calls are checked like TCP ones).
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(_) => {}
    }
    let bind_error = |source| SocketError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(bind_error)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(bind_error)?;
    Ok(listener)
}

/// Serves the executor API on `listener` until `stop` turns true, then removes the
/// socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    app: http::App,
    stop: watch::Receiver<bool>,
) {
    let router = http::executor_router(app);
    http::serve_until(listener, router, stop, "executor domain socket server").await;
    let _ = std::fs::remove_file(&path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_work_dir_and_gives_up_quietly_when_too_long() {
        let short = Path::new("/var/lib/meseta");
        assert_eq!(
            location(None, short).unwrap(),
            Some(PathBuf::from("/var/lib/meseta/agent.sock"))
        );
        let deep = PathBuf::from(format!("/{}", "d".repeat(100)));
        assert_eq!(location(None, &deep).unwrap(), None);
    }

    #[test]
    fn a_given_location_must_fit() {
        let given = PathBuf::from(format!("/run/{}.sock", "s".repeat(MAX_PATH_BYTES)));
        let err = location(Some(&given), Path::new("/w")).unwrap_err();
        assert!(matches!(err, SocketError::TooLong { .. }), "{err}");
        let fits = PathBuf::from(format!("/{}", "s".repeat(MAX_PATH_BYTES - 1)));
        assert_eq!(location(Some(&fits), Path::new("/w")).unwrap(), Some(fits));
    }

    #[tokio::test]
    async fn binding_replaces_an_old_socket_but_not_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let first = bind(&path).unwrap();
        drop(first);
        let second = bind(&path).expect("a socket left behind is replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        drop(second);
        let file = dir.path().join("plain");
        std::fs::write(&file, "keep me").unwrap();
        assert!(matches!(bind(&file), Err(SocketError::NotASocket { .. })));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}
