//! Health probes, run as Mesos runs them: after `delay_seconds`, one probe at a time,
//! `interval_seconds` apart, each bounded by `timeout_seconds` (0: unbounded). COMMAND runs
//! the check's command in the task's environment and sandbox (exit 0 is healthy); HTTP
//! GETs `<scheme>://127.0.0.1:<port><path>` without following redirects (200–399 is
//! healthy), over TLS for `https` without verifying the certificate (Mesos runs
//! `curl -k`); TCP connects to `127.0.0.1:<port>`.

use crate::machine::Input;
use crate::process::command_for;
use crate::task::task_environment;
use meseta_api::{HealthCheck, HealthCheckType, HttpCheckInfo, TaskId, TcpCheckInfo};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// Probes until the receiver of `results` is gone (or the task is aborted).
pub async fn run(
    task_id: TaskId,
    check: HealthCheck,
    environment: Vec<(String, String)>,
    cwd: PathBuf,
    results: UnboundedSender<Input>,
) {
    let client = match http_client() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("cannot build the HTTP client for health checks: {e}");
            return;
        }
    };
    tokio::time::sleep(seconds(check.delay_seconds)).await;
    loop {
        let timeout = seconds(check.timeout_seconds);
        let outcome = probe(&check, &environment, &cwd, &client, timeout).await;
        if results
            .send(Input::Health(task_id.clone(), outcome))
            .is_err()
        {
            return;
        }
        tokio::time::sleep(seconds(check.interval_seconds)).await;
    }
}

/// The client of HTTP checks: no proxy, no redirects followed, and (as `curl -k`) any
/// certificate accepted, since tasks serve HTTPS with certificates of their own.
fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .build()
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or_default()
}

/// One probe: `Ok` when healthy, else why not.
async fn probe(
    check: &HealthCheck,
    environment: &[(String, String)],
    cwd: &Path,
    client: &reqwest::Client,
    timeout: Duration,
) -> Result<(), String> {
    match (check.kind, &check.command, &check.http, &check.tcp) {
        (Some(HealthCheckType::Command), Some(command), _, _) => {
            let environment = task_environment(environment, command, None);
            let mut child = command_for(command, &environment, cwd)
                .spawn()
                .map_err(|e| format!("cannot run the COMMAND health check: {e}"))?;
            let status = match bounded(timeout, child.wait()).await {
                Some(status) => status.map_err(|e| e.to_string())?,
                None => {
                    if let Some(pid) = child.id() {
                        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    }
                    let _ = child.wait().await;
                    return Err(format!("COMMAND health check timed out after {timeout:?}"));
                }
            };
            if status.success() {
                Ok(())
            } else {
                Err(crate::exit::describe(status))
            }
        }
        (Some(HealthCheckType::Http), _, Some(http), _) => {
            let url = http_url(http);
            let response = bounded(timeout, client.get(&url).send())
                .await
                .ok_or_else(|| format!("HTTP health check of {url} timed out after {timeout:?}"))?
                .map_err(|e| format!("HTTP health check of {url} failed: {e}"))?;
            let code = response.status().as_u16();
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!(
                    "Unexpected HTTP response code: {}",
                    response.status()
                ))
            }
        }
        (Some(HealthCheckType::Tcp), _, _, Some(tcp)) => {
            let address = tcp_address(tcp);
            bounded(timeout, tokio::net::TcpStream::connect(&address))
                .await
                .ok_or_else(|| format!("TCP connection to {address} timed out after {timeout:?}"))?
                .map(drop)
                .map_err(|e| format!("TCP connection to {address} failed: {e}"))
        }
        _ => Err("the health check has no usable type".to_string()),
    }
}

/// Runs `future` for at most `timeout` (0: no limit); `None` when it timed out.
async fn bounded<F: std::future::Future>(timeout: Duration, future: F) -> Option<F::Output> {
    if timeout.is_zero() {
        return Some(future.await);
    }
    tokio::time::timeout(timeout, future).await.ok()
}

fn loopback(protocol: Option<&str>) -> &'static str {
    match protocol {
        Some("IPv6") => "[::1]",
        _ => "127.0.0.1",
    }
}

fn http_url(http: &HttpCheckInfo) -> String {
    let scheme = http.scheme.as_deref().unwrap_or("http");
    let path = http.path.as_deref().unwrap_or("");
    let slash = if path.starts_with('/') { "" } else { "/" };
    format!(
        "{scheme}://{}:{}{slash}{path}",
        loopback(http.protocol.as_deref()),
        http.port
    )
}

fn tcp_address(tcp: &TcpCheckInfo) -> String {
    format!("{}:{}", loopback(tcp.protocol.as_deref()), tcp.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn check(json: serde_json::Value) -> HealthCheck {
        serde_json::from_value(json).unwrap()
    }

    async fn run_probe(c: &HealthCheck) -> Result<(), String> {
        let env = vec![("PATH".to_string(), "/usr/bin:/bin".to_string())];
        probe(
            c,
            &env,
            Path::new("/"),
            &http_client().unwrap(),
            Duration::from_secs(2),
        )
        .await
    }

    #[test]
    fn urls() {
        let h = |j| serde_json::from_value::<HttpCheckInfo>(j).unwrap();
        assert_eq!(
            http_url(&h(serde_json::json!({"port": 80, "path": "/health"}))),
            "http://127.0.0.1:80/health"
        );
        assert_eq!(
            http_url(&h(
                serde_json::json!({"port": 8, "path": "x", "protocol": "IPv6"})
            )),
            "http://[::1]:8/x"
        );
        assert_eq!(
            http_url(&h(
                serde_json::json!({"port": 8443, "path": "/ok", "scheme": "https"})
            )),
            "https://127.0.0.1:8443/ok"
        );
    }

    #[tokio::test]
    async fn command_probes_use_exit_status_env_and_timeout() {
        let ok = check(serde_json::json!({"type": "COMMAND",
            "command": {"value": "test \"$X\" = 1", "environment": {"variables": [{"name": "X", "value": "1"}]}}}));
        assert_eq!(run_probe(&ok).await, Ok(()));
        let bad = check(serde_json::json!({"type": "COMMAND", "command": {"value": "exit 4"}}));
        assert_eq!(
            run_probe(&bad).await,
            Err("Command exited with status 4".into())
        );
        let slow = check(serde_json::json!({"type": "COMMAND", "command": {"value": "sleep 30"}}));
        let started = std::time::Instant::now();
        let e = probe(
            &slow,
            &[],
            Path::new("/"),
            &http_client().unwrap(),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    async fn serve(status: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let reply =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nLocation: /x\r\n\r\n");
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn tcp_and_http_probes() {
        let redirecting = serve("302 Found").await;
        let failing = serve("500 Internal Server Error").await;
        let tcp = check(serde_json::json!({"type": "TCP", "tcp": {"port": redirecting}}));
        assert_eq!(run_probe(&tcp).await, Ok(()));
        let http =
            |port| check(serde_json::json!({"type": "HTTP", "http": {"port": port, "path": "/h"}}));
        assert_eq!(run_probe(&http(redirecting)).await, Ok(()));
        let e = run_probe(&http(failing)).await.unwrap_err();
        assert!(e.contains("500"), "{e}");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed.local_addr().unwrap().port();
        drop(closed);
        let tcp = check(serde_json::json!({"type": "TCP", "tcp": {"port": dead}}));
        assert!(run_probe(&tcp).await.is_err());
        assert!(run_probe(&http(dead)).await.is_err());
    }
}
