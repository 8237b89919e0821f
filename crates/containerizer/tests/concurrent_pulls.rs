//! Two images that share a base layer, pulled at once through one `ImageService` from a
//! real registry (Debian's `docker-registry`), fetch that layer once. A small HTTP front
//! between the service and the registry counts the GETs and holds the first GET of the
//! shared layer until a second one arrives (or two seconds pass), so that two fetches of
//! it cannot miss each other.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use meseta_containerizer::image::{Backend, ImageService, ImageStore, RegistryConfig};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long the front holds the first GET of the shared layer for a second one.
const HOLD: Duration = Duration::from_secs(2);

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A tar holding one file.
fn layer(name: &str, content: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, name, content).unwrap();
    tar.into_inner().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `docker-registry serve` on loopback, killed when dropped.
struct RegistryProcess {
    child: Child,
    address: String,
}

impl RegistryProcess {
    async fn start(dir: &Path) -> RegistryProcess {
        let address = format!("127.0.0.1:{}", free_port());
        let config = dir.join("config.yml");
        let storage = dir.join("data");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let registry = RegistryProcess { child, address };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            let url = format!("http://{}/v2/", registry.address);
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return registry;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "docker-registry did not answer /v2/ at {}",
            registry.address
        );
    }

    /// Pushes `bytes` as a blob of `repository`; returns its descriptor.
    async fn push_blob(
        &self,
        repository: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> serde_json::Value {
        let http = reqwest::Client::new();
        let started = http
            .post(format!(
                "http://{}/v2/{repository}/blobs/uploads/",
                self.address
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), StatusCode::ACCEPTED);
        let location = started.headers()["location"].to_str().unwrap().to_string();
        let location = match location.starts_with("http") {
            true => location,
            false => format!("http://{}{location}", self.address),
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = http
            .put(format!("{location}{separator}digest={}", digest(bytes)))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            done.status(),
            StatusCode::CREATED,
            "{:?}",
            done.text().await
        );
        serde_json::json!({"mediaType": media_type, "digest": digest(bytes), "size": bytes.len()})
    }

    /// Pushes an image of `layers` (bottom first) as `repository:latest`.
    async fn push_image(&self, repository: &str, layers: &[&[u8]]) {
        let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {"Cmd": [repository]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config = self
            .push_blob(
                repository,
                &config,
                "application/vnd.oci.image.config.v1+json",
            )
            .await;
        let mut descriptors = Vec::new();
        for layer in layers {
            let media_type = "application/vnd.oci.image.layer.v1.tar";
            descriptors.push(self.push_blob(repository, layer, media_type).await);
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": descriptors,
        });
        let pushed = reqwest::Client::new()
            .put(format!(
                "http://{}/v2/{repository}/manifests/latest",
                self.address
            ))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(serde_json::to_vec(&manifest).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(
            pushed.status(),
            StatusCode::CREATED,
            "{:?}",
            pushed.text().await
        );
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The front: forwards GETs to the registry, recording their paths.
struct Front {
    registry: String,
    http: reqwest::Client,
    /// How the shared layer's blob path ends (either repository): the first GET of it
    /// waits for a second.
    held: String,
    second: Notify,
    paths: Mutex<Vec<String>>,
}

impl Front {
    fn count(&self, suffix: &str) -> usize {
        let paths = self.paths.lock().unwrap();
        paths.iter().filter(|p| p.ends_with(suffix)).count()
    }
}

async fn forward(State(front): State<Arc<Front>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let seen = {
        let mut paths = front.paths.lock().unwrap();
        paths.push(path.clone());
        paths.iter().filter(|p| p.ends_with(&front.held)).count()
    };
    if path.ends_with(&front.held) {
        match seen {
            1 => {
                let _ = tokio::time::timeout(HOLD, front.second.notified()).await;
            }
            _ => front.second.notify_one(),
        }
    }
    let mut headers = HeaderMap::new();
    for name in ["accept", "authorization"] {
        if let Some(value) = request.headers().get(name) {
            headers.insert(name, value.clone());
        }
    }
    let url = format!("http://{}{}", front.registry, request.uri());
    let answer = front.http.get(url).headers(headers).send().await.unwrap();
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    response
        .body(Body::from(answer.bytes().await.unwrap()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_fetch_a_shared_layer_once() {
    if Command::new("docker-registry")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: needs Debian's docker-registry (scripts/test.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start(dir.path()).await;
    let base = layer("base", &vec![7u8; 256 << 10]);
    let (top_a, top_b) = (layer("a", b"a"), layer("b", b"b"));
    registry.push_image("app/a", &[&base, &top_a]).await;
    registry.push_image("app/b", &[&base, &top_b]).await;

    let front = Arc::new(Front {
        registry: registry.address.clone(),
        http: reqwest::Client::new(),
        held: format!("/blobs/{}", digest(&base)),
        second: Notify::new(),
        paths: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(front.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let config = RegistryConfig {
        insecure: vec![address.clone()],
        ..RegistryConfig::default()
    };
    let service = ImageService::new(store.clone(), config, Some(Backend::Copy));
    let (name_a, name_b) = (format!("{address}/app/a"), format!("{address}/app/b"));
    let (a, b) = tokio::join!(service.image(&name_a), service.image(&name_b));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.layers[0], b.layers[0]);
    assert_eq!(a.layers[0].to_string(), digest(&base));
    let fetched = front.count(&front.held);
    assert_eq!(fetched, 1, "{:#?}", front.paths.lock().unwrap());
    for top in [&top_a, &top_b] {
        assert_eq!(front.count(&format!("/blobs/{}", digest(top))), 1);
    }
    for record in [&a, &b] {
        assert!(record.layers.iter().all(|l| store.has_blob(l)));
    }
}
