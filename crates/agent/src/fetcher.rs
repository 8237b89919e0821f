//! The fetcher: puts each `CommandInfo.uris` entry into the sandbox before the executor
//! starts, as Mesos's fetcher does.
//!
//! [`plan`] is the pure part: which source (`http(s)://`, `file://`, an absolute path, or
//! a relative one resolved against `--frameworks-home`), which file in the sandbox (the
//! URI's last path segment, or `output_file`, which must stay inside), whether to unpack
//! it (`extract`, default true, for `.tar`, `.tar.gz`, `.tgz`, `.zip` and `.gz`; never when
//! `executable`), and the cache key (`cache: true`: the user and the URI). [`CacheIndex`]
//! is the pure least-recently-used bookkeeping of the cache under
//! `<work_dir>/fetch-cache/`, bounded by `--fetcher-cache-size`. [`Fetcher`] does the I/O:
//! downloads, copies, safe unpacking (no entry may land outside the sandbox), mode 0755
//! for executables, ownership by the task's user, and a log of what it fetched in the
//! sandbox's `stderr`.

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Mesos's default `--fetcher_cache_size`: 2GB.
const DEFAULT_CACHE_SIZE: u64 = 2 << 30;
/// Mesos's default `--fetcher_stall_timeout`.
const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The fetcher's flags.
#[derive(Clone, Debug)]
pub struct FetcherOptions {
    /// `--fetcher-cache-size`: the most bytes the cache holds.
    pub cache_size: u64,
    /// `--frameworks-home`: what relative URIs are resolved against.
    pub frameworks_home: Option<PathBuf>,
    /// `--fetcher-stall-timeout`: a download that receives nothing for this long fails.
    pub stall_timeout: Duration,
}

impl Default for FetcherOptions {
    fn default() -> Self {
        FetcherOptions {
            cache_size: DEFAULT_CACHE_SIZE,
            frameworks_home: None,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// Parses a size as Mesos writes them: bytes, or a number with `B`, `KB`, `MB`, `GB` or
/// `TB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        "TB" => 40,
        _ => return Err(format!("'{text}' is not a size (like 2GB or 512MB)")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{text}' is not a size (like 2GB or 512MB)"))
}

/// Why a URI could not be fetched; the message names the URI and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Failed to fetch '{uri}': {cause}")]
pub struct FetchError {
    pub uri: String,
    pub cause: String,
}

/// One `CommandInfo.URI`.
#[derive(Debug, Deserialize)]
struct Uri {
    value: String,
    #[serde(default)]
    executable: bool,
    extract: Option<bool>,
    #[serde(default)]
    cache: bool,
    output_file: Option<String>,
}

/// Where a URI's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `http://` or `https://` URL.
    Http(String),
    /// A file on this host (`file://`, an absolute path, or one under the frameworks home).
    Local(PathBuf),
}

/// The archives the fetcher unpacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Archive {
    Tar,
    TarGz,
    /// One gzip-compressed file, decompressed beside it in the sandbox as `name`.
    Gz(String),
    Zip,
}

/// What to do for one URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub uri: String,
    pub source: Source,
    /// The file in the sandbox, relative to it.
    pub destination: PathBuf,
    pub executable: bool,
    /// Unpacked into the sandbox after it is placed.
    pub archive: Option<Archive>,
    /// The cache entry's name, when the URI asks to be cached.
    pub cache_key: Option<String>,
}

/// Plans the fetches of `uris` (raw `CommandInfo.uris`) for a task run as `user`.
pub fn plan(
    uris: &[Value],
    frameworks_home: Option<&Path>,
    user: Option<&str>,
) -> Result<Vec<Fetch>, FetchError> {
    uris.iter()
        .map(|raw| {
            let uri: Uri = serde_json::from_value(raw.clone()).map_err(|e| FetchError {
                uri: raw
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                cause: format!("not a CommandInfo.URI: {e}"),
            })?;
            let fail = |cause: String| FetchError {
                uri: uri.value.clone(),
                cause,
            };
            let source = source(&uri.value, frameworks_home).map_err(fail)?;
            let destination = match &uri.output_file {
                Some(name) => inside_sandbox(name).map_err(fail)?,
                None => PathBuf::from(file_name(&source).map_err(fail)?),
            };
            let archive = match (uri.executable, uri.extract.unwrap_or(true)) {
                (false, true) => archive_kind(&destination),
                _ => None,
            };
            let cache_key = uri.cache.then(|| {
                let digest = Sha256::digest(format!("{}\n{}", user.unwrap_or(""), uri.value));
                digest.iter().map(|b| format!("{b:02x}")).collect()
            });
            Ok(Fetch {
                uri: uri.value.clone(),
                source,
                destination,
                executable: uri.executable,
                archive,
                cache_key,
            })
        })
        .collect()
}

fn source(value: &str, frameworks_home: Option<&Path>) -> Result<Source, String> {
    let lower = value.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Source::Http(value.to_string()));
    }
    if let Some(path) = value.strip_prefix("file://") {
        return match path.starts_with('/') {
            true => Ok(Source::Local(PathBuf::from(path))),
            false => Err("a file:// URI needs an absolute path (file:///path)".into()),
        };
    }
    if let Some((scheme, _)) = value.split_once("://") {
        return Err(format!(
            "the '{scheme}' scheme is not supported (http, https, file or a path)"
        ));
    }
    if value.starts_with('/') {
        return Ok(Source::Local(PathBuf::from(value)));
    }
    match frameworks_home {
        Some(home) if !value.is_empty() => Ok(Source::Local(home.join(value))),
        _ => Err("a relative path needs the agent's --frameworks-home to resolve it".into()),
    }
}

/// The last segment of the source's path: the name of the fetched file.
fn file_name(source: &Source) -> Result<String, String> {
    let path = match source {
        Source::Http(url) => {
            let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
            let rest = rest.split(['?', '#']).next().unwrap_or_default();
            rest.split_once('/')
                .map_or("", |(_, path)| path)
                .to_string()
        }
        Source::Local(path) => path.display().to_string(),
    };
    match path.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => Ok(name.to_string()),
        _ => Err("the URI names no file; set output_file".into()),
    }
}

/// `output_file` as a path in the sandbox: relative, without `..`.
fn inside_sandbox(name: &str) -> Result<PathBuf, String> {
    let path = Path::new(name);
    let normal = path.components().all(|c| matches!(c, Component::Normal(_)));
    match normal && !name.is_empty() {
        true => Ok(path.to_path_buf()),
        false => Err(format!(
            "output_file '{name}' must be a relative path inside the sandbox"
        )),
    }
}

fn archive_kind(destination: &Path) -> Option<Archive> {
    let name = destination.file_name()?.to_str()?.to_ascii_lowercase();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(Archive::TarGz)
    } else if name.ends_with(".tar") {
        Some(Archive::Tar)
    } else if name.ends_with(".zip") {
        Some(Archive::Zip)
    } else {
        let name = destination.file_name()?.to_str()?;
        let stem = name.get(..name.len().checked_sub(3)?)?;
        let gz = name.get(stem.len()..)?.eq_ignore_ascii_case(".gz");
        (gz && !stem.is_empty()).then(|| Archive::Gz(stem.to_string()))
    }
}

/// The cache's bookkeeping: entry sizes and recency, within a capacity in bytes.
#[derive(Debug)]
pub struct CacheIndex {
    capacity: u64,
    used: u64,
    clock: u64,
    entries: HashMap<String, (u64, u64)>,
}

impl CacheIndex {
    pub fn new(capacity: u64) -> CacheIndex {
        CacheIndex {
            capacity,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// Whether `key` is cached; marks it as just used.
    pub fn touch(&mut self, key: &str) -> bool {
        self.clock += 1;
        let clock = self.clock;
        self.entries
            .get_mut(key)
            .map(|(_, used)| *used = clock)
            .is_some()
    }

    /// Adds `key` of `size` bytes, evicting the least recently used entries to make
    /// room; returns the evicted keys, or `None` (and changes nothing) when `size` is
    /// beyond the capacity.
    pub fn admit(&mut self, key: &str, size: u64) -> Option<Vec<String>> {
        if size > self.capacity {
            return None;
        }
        self.forget(key);
        let mut evicted = Vec::new();
        while self.used + size > self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
                .expect("bytes in use belong to entries");
            self.forget(&oldest);
            evicted.push(oldest);
        }
        self.clock += 1;
        self.entries.insert(key.to_string(), (size, self.clock));
        self.used += size;
        Some(evicted)
    }

    /// Drops `key` (its file went missing).
    pub fn forget(&mut self, key: &str) {
        if let Some((size, _)) = self.entries.remove(key) {
            self.used -= size;
        }
    }

    /// The bytes the cached entries hold.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used
    }
}

/// Fetches URIs into sandboxes, with the agent's cache.
pub struct Fetcher {
    client: reqwest::Client,
    cache_dir: PathBuf,
    frameworks_home: Option<PathBuf>,
    stall_timeout: Duration,
    index: Mutex<CacheIndex>,
}

impl Fetcher {
    /// A fetcher with an empty cache in `<work_dir>/fetch-cache` (what an earlier agent
    /// left there is removed, as Mesos does).
    pub fn new(work_dir: &Path, options: &FetcherOptions) -> Fetcher {
        let cache_dir = work_dir.join("fetch-cache");
        let _ = std::fs::remove_dir_all(&cache_dir);
        Fetcher {
            client: reqwest::Client::new(),
            cache_dir,
            frameworks_home: options.frameworks_home.clone(),
            stall_timeout: options.stall_timeout,
            index: Mutex::new(CacheIndex::new(options.cache_size)),
        }
    }

    /// Fetches `uris` into `sandbox`, owned by `user` when given (the agent switches to
    /// it), logging to the sandbox's `stderr`.
    pub async fn fetch(
        &self,
        uris: &[Value],
        sandbox: &Path,
        user: Option<&str>,
    ) -> Result<(), FetchError> {
        if uris.is_empty() {
            return Ok(());
        }
        let fetches = plan(uris, self.frameworks_home.as_deref(), user)?;
        let owner = match user {
            None => None,
            Some(name) => Some(owner(name).map_err(|cause| FetchError {
                uri: fetches[0].uri.clone(),
                cause,
            })?),
        };
        for fetch in &fetches {
            log(sandbox, &format!("Fetching '{}'", fetch.uri));
            let done = self.fetch_one(fetch, sandbox, owner).await;
            let line = match &done {
                Ok(how) => format!(
                    "Fetched '{}' to {} ({how})",
                    fetch.uri,
                    fetch.destination.display()
                ),
                Err(cause) => format!("Failed to fetch '{}': {cause}", fetch.uri),
            };
            log(sandbox, &line);
            done.map_err(|cause| FetchError {
                uri: fetch.uri.clone(),
                cause,
            })?;
        }
        Ok(())
    }

    /// Places, unpacks and hands over one URI; says where it came from.
    async fn fetch_one(
        &self,
        fetch: &Fetch,
        sandbox: &Path,
        owner: Option<Owner>,
    ) -> Result<String, String> {
        let destination = sandbox.join(&fetch.destination);
        stays_inside(sandbox, &destination)?;
        if let Some(parent) = destination.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let how = match &fetch.cache_key {
            None => self.download(&fetch.source, &destination, owner).await?,
            Some(key) => self.through_cache(fetch, key, &destination, owner).await?,
        };
        if fetch.executable {
            let mode = std::fs::Permissions::from_mode(0o755);
            tokio::fs::set_permissions(&destination, mode)
                .await
                .map_err(|e| format!("making {} executable: {e}", destination.display()))?;
        }
        let mut placed = vec![destination.clone()];
        if let Some(kind) = fetch.archive.clone() {
            let (archive, into) = (destination.clone(), sandbox.to_path_buf());
            let unpacked = tokio::task::spawn_blocking(move || unpack(&archive, kind, &into))
                .await
                .map_err(|e| format!("unpacking: {e}"))??;
            placed.extend(unpacked);
        }
        if let Some(owner) = owner {
            for path in with_parents(&placed, sandbox) {
                std::os::unix::fs::lchown(&path, Some(owner.uid), Some(owner.gid))
                    .map_err(|e| format!("giving {} to uid {}: {e}", path.display(), owner.uid))?;
            }
        }
        Ok(how)
    }

    /// Copies a cached entry to `destination`, downloading it into the cache first when
    /// it is not there (or straight to `destination` when it is larger than the cache).
    async fn through_cache(
        &self,
        fetch: &Fetch,
        key: &str,
        destination: &Path,
        owner: Option<Owner>,
    ) -> Result<String, String> {
        let cached = self.cache_dir.join(key);
        if self.index.lock().unwrap().touch(key) {
            if tokio::fs::copy(&cached, destination).await.is_ok() {
                return Ok("from the cache".into());
            }
            self.index.lock().unwrap().forget(key);
        }
        tokio::fs::create_dir_all(&self.cache_dir)
            .await
            .map_err(|e| format!("creating {}: {e}", self.cache_dir.display()))?;
        let partial = self
            .cache_dir
            .join(format!(".{key}.{}", uuid::Uuid::new_v4()));
        let fetched = self.download(&fetch.source, &partial, owner).await;
        let size = match fetched.and_then(|_| size_of(&partial)) {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
        };
        let admitted = self.index.lock().unwrap().admit(key, size);
        let Some(evicted) = admitted else {
            tokio::fs::rename(&partial, destination)
                .await
                .map_err(|e| format!("moving the download into the sandbox: {e}"))?;
            return Ok(format!("{size} bytes, larger than the cache"));
        };
        for old in evicted {
            let _ = tokio::fs::remove_file(self.cache_dir.join(old)).await;
        }
        tokio::fs::rename(&partial, &cached)
            .await
            .map_err(|e| format!("adding to the cache: {e}"))?;
        tokio::fs::copy(&cached, destination)
            .await
            .map_err(|e| format!("copying from the cache: {e}"))?;
        Ok(format!("{size} bytes, now cached"))
    }

    /// Writes the source's content to `destination`; local files are read with the
    /// rights of `owner`, as Mesos runs its fetcher as the task's user.
    async fn download(
        &self,
        source: &Source,
        destination: &Path,
        owner: Option<Owner>,
    ) -> Result<String, String> {
        let create = |e: std::io::Error| format!("writing {}: {e}", destination.display());
        match source {
            Source::Http(url) => {
                let stalled = || {
                    let timeout = meseta_api::duration::format(self.stall_timeout);
                    format!("the download stalled (nothing received for {timeout})")
                };
                let stall = |f| tokio::time::timeout(self.stall_timeout, f);
                let sent = stall(self.client.get(url).send()).await;
                let mut response = sent.map_err(|_| stalled())?.map_err(chain)?;
                if !response.status().is_success() {
                    return Err(format!("HTTP {}", response.status()));
                }
                let mut file = tokio::fs::File::create(destination).await.map_err(create)?;
                let mut bytes = 0u64;
                loop {
                    let next = tokio::time::timeout(self.stall_timeout, response.chunk()).await;
                    let Some(chunk) = next.map_err(|_| stalled())?.map_err(chain)? else {
                        break;
                    };
                    file.write_all(&chunk).await.map_err(create)?;
                    bytes += chunk.len() as u64;
                }
                file.flush().await.map_err(create)?;
                Ok(format!("{bytes} bytes"))
            }
            Source::Local(path) => {
                let path = path.clone();
                let opened = tokio::task::spawn_blocking(move || open_as(&path, owner))
                    .await
                    .map_err(|e| e.to_string())??;
                let mut from = tokio::fs::File::from_std(opened);
                let mut to = tokio::fs::File::create(destination).await.map_err(create)?;
                let bytes = tokio::io::copy(&mut from, &mut to).await.map_err(create)?;
                Ok(format!("{bytes} bytes"))
            }
        }
    }
}

/// The uid and gid fetched files are given to.
#[derive(Clone, Copy, Debug)]
struct Owner {
    uid: u32,
    gid: u32,
}

fn owner(user: &str) -> Result<Owner, String> {
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(Owner {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(None) => Err(format!("user '{user}' does not exist on this agent")),
        Err(e) => Err(format!("looking up user '{user}': {e}")),
    }
}

/// Opens a local source; with an owner, on a thread of its own whose filesystem ids are
/// the owner's (setfsuid is per thread), so a task reads only what its user may.
fn open_as(path: &Path, owner: Option<Owner>) -> Result<std::fs::File, String> {
    let open = |path: &Path| {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        match file.metadata().map(|m| m.is_file()) {
            Ok(true) => Ok(file),
            _ => Err(format!("{} is not a regular file", path.display())),
        }
    };
    let Some(owner) = owner else {
        return open(path);
    };
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        // SAFETY: setfsgid/setfsuid only change this thread's filesystem ids; the thread
        // ends right after the open.
        unsafe {
            libc::setfsgid(owner.gid);
            libc::setfsuid(owner.uid);
        }
        open(&path)
    })
    .join()
    .map_err(|_| "the thread opening the file panicked".to_string())?
}

fn size_of(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// An error with its causes (reqwest's own message hides "connection refused").
fn chain(error: reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Refuses a destination that an earlier URI's symlink (say, from an archive) would send
/// outside the sandbox: the nearest directory above it that exists must resolve inside,
/// and it must not be a link itself.
fn stays_inside(sandbox: &Path, destination: &Path) -> Result<(), String> {
    let escapes = || {
        format!(
            "{} would be written outside the sandbox",
            destination.display()
        )
    };
    let root = sandbox
        .canonicalize()
        .map_err(|e| format!("{}: {e}", sandbox.display()))?;
    let mut existing = destination.parent().unwrap_or(sandbox);
    while std::fs::symlink_metadata(existing).is_err() && existing != sandbox {
        existing = existing.parent().unwrap_or(sandbox);
    }
    let is_link = std::fs::symlink_metadata(destination).is_ok_and(|m| m.file_type().is_symlink());
    match existing.canonicalize() {
        Ok(resolved) if resolved.starts_with(&root) && !is_link => Ok(()),
        _ => Err(escapes()),
    }
}

/// Unpacks `archive` into `into`, refusing entries that would land outside it (absolute
/// paths, `..`, or through a link); returns the paths it created.
fn unpack(archive: &Path, kind: Archive, into: &Path) -> Result<Vec<PathBuf>, String> {
    let bad = |e: std::io::Error| format!("bad archive {}: {e}", archive.display());
    let file = std::fs::File::open(archive).map_err(bad)?;
    let reader: Box<dyn std::io::Read> = match kind {
        Archive::Tar => Box::new(file),
        Archive::TarGz => Box::new(flate2::read::GzDecoder::new(file)),
        Archive::Zip => {
            return unzip(file, into).map_err(|e| format!("bad archive {}: {e}", archive.display()))
        }
        Archive::Gz(name) => {
            // `name` is one plain component (a file name); never follow a link there.
            let target = into.join(name);
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&target)
                .map_err(|e| format!("writing {}: {e}", target.display()))?;
            let mut gz = flate2::read::GzDecoder::new(file);
            std::io::copy(&mut gz, &mut out).map_err(bad)?;
            return Ok(vec![target]);
        }
    };
    let mut tar = tar::Archive::new(reader);
    // Modes without setuid, setgid or sticky bits; no owners from the archive.
    tar.set_preserve_permissions(false);
    tar.set_overwrite(true);
    let mut created = Vec::new();
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let escapes = format!(
            "archive entry '{}' would land outside the sandbox",
            path.display()
        );
        if !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(escapes);
        }
        let unpacked = entry.unpack_in(into);
        if !unpacked.map_err(|e| format!("archive entry '{}': {e}", path.display()))? {
            return Err(escapes);
        }
        created.push(into.join(&path));
    }
    Ok(created)
}

/// Unpacks a zip archive into `into` with the same rules as tar archives: no entry
/// outside `into` (`..`, absolute paths, or through a symlink), no symlink entries, modes
/// without setuid, setgid or sticky bits.
fn unzip(file: std::fs::File, into: &Path) -> Result<Vec<PathBuf>, String> {
    let mut zip = zip::ZipArchive::new(file).map_err(|e| e.to_string())?;
    let root = into
        .canonicalize()
        .map_err(|e| format!("{}: {e}", into.display()))?;
    let mut created = Vec::new();
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(|e| e.to_string())?;
        let escapes = format!(
            "archive entry '{}' would land outside the sandbox",
            entry.name()
        );
        let relative = entry.enclosed_name().ok_or_else(|| escapes.clone())?;
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(escapes);
        }
        if entry.is_symlink() {
            return Err(format!(
                "archive entry '{}' is a symlink, which zip archives may not carry here",
                entry.name()
            ));
        }
        let target = into.join(&relative);
        let parent = if entry.is_dir() {
            target.as_path()
        } else {
            target.parent().unwrap_or(into)
        };
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        let inside = parent.canonicalize().is_ok_and(|p| p.starts_with(&root));
        if !inside {
            return Err(escapes);
        }
        if !entry.is_dir() {
            let mode = entry.unix_mode().unwrap_or(0o644) & 0o777;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&target)
                .map_err(|e| format!("writing {}: {e}", target.display()))?;
            std::io::copy(&mut entry, &mut out)
                .map_err(|e| format!("entry '{}': {e}", relative.display()))?;
        }
        created.push(target);
    }
    Ok(created)
}

/// The paths and the directories above them, up to (not including) `sandbox`.
fn with_parents(paths: &[PathBuf], sandbox: &Path) -> std::collections::BTreeSet<PathBuf> {
    let mut all = std::collections::BTreeSet::new();
    for path in paths {
        let mut current = path.as_path();
        while current != sandbox && current.starts_with(sandbox) {
            all.insert(current.to_path_buf());
            current = current.parent().unwrap_or(sandbox);
        }
    }
    all
}

/// Appends a line to the sandbox's `stderr`, where the executor's own output follows.
fn log(sandbox: &Path, line: &str) {
    let opened = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sandbox.join("stderr"));
    if let Ok(mut file) = opened {
        let _ = writeln!(file, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(uri: Value, home: Option<&Path>, user: Option<&str>) -> Result<Fetch, FetchError> {
        plan(&[uri], home, user).map(|mut v| v.remove(0))
    }

    #[test]
    fn sources_and_names() {
        let f = one(json!({"value":"http://h:8/a/b/run.sh?x=1#f"}), None, None).unwrap();
        assert_eq!(f.source, Source::Http("http://h:8/a/b/run.sh?x=1#f".into()));
        assert_eq!(f.destination, PathBuf::from("run.sh"));
        let f = one(json!({"value":"HTTPS://h/x.tgz"}), None, None).unwrap();
        assert_eq!(f.destination, PathBuf::from("x.tgz"));
        let f = one(json!({"value":"file:///srv/data.txt"}), None, None).unwrap();
        assert_eq!(f.source, Source::Local("/srv/data.txt".into()));
        assert_eq!(f.destination, PathBuf::from("data.txt"));
        let f = one(json!({"value":"/srv/d.tar"}), None, None).unwrap();
        assert_eq!(f.source, Source::Local("/srv/d.tar".into()));
        let home = Path::new("/opt/fw");
        let f = one(json!({"value":"bin/tool"}), Some(home), None).unwrap();
        assert_eq!(f.source, Source::Local("/opt/fw/bin/tool".into()));
        assert_eq!(f.destination, PathBuf::from("tool"));
    }

    #[test]
    fn unusable_uris_are_refused_with_the_reason() {
        let cause = |uri: Value| one(uri, None, None).unwrap_err().cause;
        assert!(cause(json!({"value":"bin/tool"})).contains("--frameworks-home"));
        assert!(cause(json!({"value":"hdfs://nn/x"})).contains("'hdfs'"));
        assert!(cause(json!({"value":"file://relative/x"})).contains("absolute"));
        assert!(cause(json!({"value":"http://h/dir/"})).contains("output_file"));
        assert!(cause(json!({"value":"http://h"})).contains("output_file"));
        assert!(cause(json!({"executable":true})).contains("CommandInfo.URI"));
        let err = one(json!({"value":"ftp://h/x"}), None, None).unwrap_err();
        assert_eq!(err.uri, "ftp://h/x");
        assert!(err.to_string().starts_with("Failed to fetch 'ftp://h/x': "));
    }

    #[test]
    fn output_file_must_stay_in_the_sandbox() {
        let dest = |o: &str| {
            one(json!({"value":"http://h/x","output_file":o}), None, None).map(|f| f.destination)
        };
        assert_eq!(dest("bin/tool").unwrap(), PathBuf::from("bin/tool"));
        for bad in ["../x", "/etc/passwd", "a/../../x", "", "./x/.."] {
            let err = dest(bad).unwrap_err();
            assert!(err.cause.contains("inside the sandbox"), "{bad}: {err}");
        }
    }

    #[test]
    fn extraction_is_decided_by_name_and_flags() {
        let archive = |uri: Value| one(uri, None, None).unwrap().archive;
        assert_eq!(
            archive(json!({"value":"http://h/a.tar.gz"})),
            Some(Archive::TarGz)
        );
        assert_eq!(
            archive(json!({"value":"http://h/a.TGZ"})),
            Some(Archive::TarGz)
        );
        assert_eq!(archive(json!({"value":"/x/a.tar"})), Some(Archive::Tar));
        assert_eq!(archive(json!({"value":"/x/a.zip"})), Some(Archive::Zip));
        assert_eq!(archive(json!({"value":"http://h/a.txt"})), None);
        assert_eq!(
            archive(json!({"value":"http://h/notes.txt.GZ"})),
            Some(Archive::Gz("notes.txt".into()))
        );
        assert_eq!(archive(json!({"value":"http://h/.gz"})), None);
        assert_eq!(
            archive(json!({"value":"http://h/a.tgz","extract":false})),
            None
        );
        assert_eq!(
            archive(json!({"value":"http://h/a.tgz","executable":true})),
            None
        );
        assert_eq!(
            archive(json!({"value":"http://h/a","output_file":"b.tar"})),
            Some(Archive::Tar),
            "the name in the sandbox decides"
        );
    }

    #[test]
    fn cache_keys_depend_on_user_and_uri() {
        let key = |v: &str, user: Option<&str>, cache: bool| {
            one(json!({"value":v,"cache":cache}), None, user)
                .unwrap()
                .cache_key
        };
        assert_eq!(key("http://h/a", None, false), None);
        let a = key("http://h/a", Some("alice"), true).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(Some(a.clone()), key("http://h/a", Some("alice"), true));
        assert_ne!(Some(a.clone()), key("http://h/a", Some("bob"), true));
        assert_ne!(Some(a), key("http://h/b", Some("alice"), true));
    }

    #[test]
    fn cache_evicts_least_recently_used() {
        let mut index = CacheIndex::new(100);
        assert_eq!(index.admit("a", 40), Some(vec![]));
        assert_eq!(index.admit("b", 40), Some(vec![]));
        assert!(index.touch("a"));
        assert!(!index.touch("c"));
        assert_eq!(index.admit("c", 40), Some(vec!["b".to_string()]));
        assert_eq!(index.used(), 80);
        assert_eq!(index.admit("d", 101), None, "larger than the cache");
        assert_eq!(index.used(), 80);
        let mut evicted = index.admit("e", 100).unwrap();
        evicted.sort();
        assert_eq!(evicted, ["a", "c"]);
        assert_eq!(index.admit("e", 30), Some(vec![]), "re-admitting replaces");
        assert_eq!(index.used(), 30);
        index.forget("e");
        assert_eq!(index.used(), 0);
    }

    #[test]
    fn ownership_covers_the_directories_made_on_the_way() {
        let sandbox = Path::new("/sb");
        let placed = [PathBuf::from("/sb/a/b/c.txt"), PathBuf::from("/sb/a/d")];
        let all: Vec<_> = with_parents(&placed, sandbox).into_iter().collect();
        assert_eq!(
            all,
            ["/sb/a", "/sb/a/b", "/sb/a/b/c.txt", "/sb/a/d"].map(PathBuf::from)
        );
    }

    #[test]
    fn destinations_through_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sb");
        std::fs::create_dir_all(sandbox.join("sub")).unwrap();
        std::os::unix::fs::symlink(dir.path(), sandbox.join("up")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("x"), sandbox.join("leaf")).unwrap();
        assert_eq!(stays_inside(&sandbox, &sandbox.join("sub/a")), Ok(()));
        assert_eq!(stays_inside(&sandbox, &sandbox.join("a")), Ok(()));
        assert_eq!(stays_inside(&sandbox, &sandbox.join("new/dirs/a")), Ok(()));
        std::os::unix::fs::symlink("/nonexistent-h5", sandbox.join("dangling")).unwrap();
        for bad in ["up/a", "up/new/a", "leaf", "dangling/a"] {
            let err = stays_inside(&sandbox, &sandbox.join(bad)).unwrap_err();
            assert!(err.contains("outside the sandbox"), "{err}");
        }
    }

    #[test]
    fn sizes_parse_like_mesos() {
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_size("512MB"), Ok(512 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("7B"), Ok(7));
        assert!(parse_size("2XB").is_err());
        assert!(parse_size("GB").is_err());
    }

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        gzip(&tar_of(entries, &[]))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    /// A tar of symlinks (name, target), then files (name, content).
    fn tar_of(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, target) in links {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, name, target).unwrap();
        }
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // set_path refuses `..`; write the name raw, as a hostile archive would.
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn unpacking_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sb");
        std::fs::create_dir(&sandbox).unwrap();
        let good = dir.path().join("good.tgz");
        std::fs::write(&good, tar_gz(&[("d/e/f.txt", b"hi")])).unwrap();
        let created = unpack(&good, Archive::TarGz, &sandbox).unwrap();
        assert_eq!(created, [sandbox.join("d/e/f.txt")]);
        assert_eq!(std::fs::read(sandbox.join("d/e/f.txt")).unwrap(), b"hi");
        let evil = dir.path().join("evil.tgz");
        std::fs::write(&evil, tar_gz(&[("../out.txt", b"x")])).unwrap();
        let err = unpack(&evil, Archive::TarGz, &sandbox).unwrap_err();
        assert!(err.contains("'../out.txt'"), "{err}");
        assert!(!dir.path().join("out.txt").exists());
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let through_link = dir.path().join("link.tar");
        let tar = tar_of(
            &[("up/planted.txt", b"x")],
            &[("up", outside.to_str().unwrap())],
        );
        std::fs::write(&through_link, tar).unwrap();
        let err = unpack(&through_link, Archive::Tar, &sandbox).unwrap_err();
        assert!(
            err.contains("'up/planted.txt'") && err.contains("outside"),
            "{err}"
        );
        assert!(!outside.join("planted.txt").exists());
        let notes = dir.path().join("notes.gz");
        std::fs::write(&notes, gzip(b"plain")).unwrap();
        let created = unpack(&notes, Archive::Gz("notes".into()), &sandbox).unwrap();
        assert_eq!(created, [sandbox.join("notes")]);
        assert_eq!(std::fs::read(sandbox.join("notes")).unwrap(), b"plain");
        std::os::unix::fs::symlink(outside.join("victim"), sandbox.join("linked")).unwrap();
        let err = unpack(&notes, Archive::Gz("linked".into()), &sandbox).unwrap_err();
        assert!(err.contains("linked"), "{err}");
        assert!(
            !outside.join("victim").exists(),
            "no write through the link"
        );
        let zipped = dir.path().join("z.zip");
        std::fs::write(&zipped, zip_of(&[("z/one.txt", b"1")])).unwrap();
        let created = unpack(&zipped, Archive::Zip, &sandbox).unwrap();
        assert_eq!(created, [sandbox.join("z/one.txt")]);
        assert_eq!(std::fs::read(sandbox.join("z/one.txt")).unwrap(), b"1");
        std::fs::write(&zipped, zip_of(&[("../zip-out.txt", b"x")])).unwrap();
        let err = unpack(&zipped, Archive::Zip, &sandbox).unwrap_err();
        assert!(
            err.contains("'../zip-out.txt'") && err.contains("outside"),
            "{err}"
        );
        assert!(!dir.path().join("zip-out.txt").exists());
        std::os::unix::fs::symlink(&outside, sandbox.join("zlink")).unwrap();
        std::fs::write(&zipped, zip_of(&[("zlink/planted.txt", b"x")])).unwrap();
        let err = unpack(&zipped, Archive::Zip, &sandbox).unwrap_err();
        assert!(err.contains("'zlink/planted.txt'"), "{err}");
        assert!(!outside.join("planted.txt").exists());
        let junk = dir.path().join("junk.tgz");
        std::fs::write(&junk, b"not gzip").unwrap();
        assert!(unpack(&junk, Archive::TarGz, &sandbox)
            .unwrap_err()
            .contains("bad archive"));
    }
}
