//! A task's sandbox, found the way Mesos tools find it, and its files read with the
//! agent's `/files/read`:
//!
//! 1. the agent's address: the master's operator `GET_AGENTS` (`agents[].pid`,
//!    `slave(1)@ip:port`, else `agent_info.hostname:port`), else the master's v0
//!    `/master/state` (`slaves[].pid`);
//! 2. the sandbox: the agent's v0 `/state` (else `/slave(1)/state`), in `frameworks[]` or
//!    `completed_frameworks[]` with the framework's id, the executor (`executors[]` or
//!    `completed_executors[]`) whose id is the task id or that lists the task in `tasks`,
//!    `queued_tasks` or `completed_tasks`: its `directory`.

use crate::client::Scheduler;
use crate::error::Error;
use meseta_api::{AgentId, FrameworkId, TaskId};
use serde_json::Value;
use std::time::Duration;

/// How long one request to the master or the agent may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The sandbox of one task on its agent.
#[derive(Clone, Debug)]
pub struct Sandbox {
    http: reqwest::Client,
    /// The agent's base URL (`http://ip:port`).
    pub agent: String,
    /// The sandbox directory on the agent.
    pub directory: String,
}

impl Sandbox {
    /// Finds the sandbox of `task_id` (of this framework) on `agent_id`.
    pub async fn locate(
        scheduler: &Scheduler,
        agent_id: &AgentId,
        task_id: &TaskId,
    ) -> Result<Sandbox, Error> {
        let http = scheduler.shared.http.clone();
        let master = scheduler.leader();
        let framework_id = scheduler.framework_id().ok_or(Error::NotSubscribed)?;
        let agent = agent_address(&http, &master, agent_id).await?;
        let directory = sandbox_directory(&http, &agent, &framework_id, task_id).await?;
        Ok(Sandbox {
            http,
            agent,
            directory,
        })
    }

    /// Reads up to `length` bytes of `file` (a name in the sandbox) from `offset`; `None`
    /// while the file does not exist.
    pub async fn read(
        &self,
        file: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<String>, Error> {
        let url = format!("{}/files/read", self.agent);
        let path = format!("{}/{file}", self.directory.trim_end_matches('/'));
        let request = self.http.get(&url).query(&[
            ("path", path),
            ("offset", offset.to_string()),
            ("length", length.to_string()),
        ]);
        let Some(body) = fetch_json(request, &url, "/files/read").await? else {
            return Ok(None);
        };
        Ok(Some(
            body.get("data")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ))
    }
}

/// GETs or POSTs and parses a JSON answer; `None` on 404.
async fn fetch_json(
    request: reqwest::RequestBuilder,
    url: &str,
    what: &'static str,
) -> Result<Option<Value>, Error> {
    let response = request
        .timeout(REQUEST_TIMEOUT)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|source| Error::Unreachable {
            url: url.to_string(),
            source,
        })?;
    let status = response.status();
    if status.as_u16() == 404 {
        return Ok(None);
    }
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(Error::Rejected {
            call: what,
            status: status.as_u16(),
            body,
        });
    }
    serde_json::from_str(&body)
        .map(Some)
        .map_err(|e| Error::Stream(format!("{what} from {url} is not JSON: {e}")))
}

async fn agent_address(
    http: &reqwest::Client,
    master: &str,
    agent_id: &AgentId,
) -> Result<String, Error> {
    let url = format!("{master}/api/v1");
    let request = http
        .post(&url)
        .header("Content-Type", "application/json")
        .body(r#"{"type":"GET_AGENTS"}"#);
    let from_operator_api = match fetch_json(request, &url, "GET_AGENTS").await {
        Ok(Some(body)) => agent_in_get_agents(&body, agent_id),
        Ok(None) | Err(_) => None,
    };
    if let Some(address) = from_operator_api {
        return Ok(format!("http://{address}"));
    }
    let url = format!("{master}/master/state");
    let state = fetch_json(http.get(&url), &url, "/master/state").await?;
    state
        .and_then(|s| agent_in_v0_state(&s, agent_id))
        .map(|address| format!("http://{address}"))
        .ok_or_else(|| Error::NotFound(format!("agent {agent_id} is not known to {master}")))
}

async fn sandbox_directory(
    http: &reqwest::Client,
    agent: &str,
    framework_id: &FrameworkId,
    task_id: &TaskId,
) -> Result<String, Error> {
    for path in ["/state", "/slave(1)/state"] {
        let url = format!("{agent}{path}");
        if let Some(state) = fetch_json(http.get(&url), &url, "/state").await? {
            return directory_in_agent_state(&state, framework_id, task_id).ok_or_else(|| {
                Error::NotFound(format!("agent {agent} has no sandbox for task {task_id}"))
            });
        }
    }
    Err(Error::NotFound(format!("agent {agent} serves no /state")))
}

/// `ip:port` from a libprocess pid (`slave(1)@ip:port`).
fn pid_address(pid: &Value) -> Option<String> {
    let (_, address) = pid.as_str()?.split_once('@')?;
    Some(address.to_string())
}

fn agent_in_get_agents(body: &Value, agent_id: &AgentId) -> Option<String> {
    let agents = body.pointer("/get_agents/agents")?.as_array()?;
    let agent = agents.iter().find(|a| {
        a.pointer("/agent_info/id/value").and_then(Value::as_str) == Some(agent_id.as_str())
    })?;
    pid_address(&agent["pid"]).or_else(|| {
        let info = &agent["agent_info"];
        Some(format!(
            "{}:{}",
            info["hostname"].as_str()?,
            info["port"].as_u64().unwrap_or(5051)
        ))
    })
}

fn agent_in_v0_state(state: &Value, agent_id: &AgentId) -> Option<String> {
    let agent = state["slaves"]
        .as_array()?
        .iter()
        .find(|a| a["id"].as_str() == Some(agent_id.as_str()))?;
    pid_address(&agent["pid"]).or_else(|| {
        Some(format!(
            "{}:{}",
            agent["hostname"].as_str()?,
            agent["port"].as_u64().unwrap_or(5051)
        ))
    })
}

fn directory_in_agent_state(
    state: &Value,
    framework_id: &FrameworkId,
    task_id: &TaskId,
) -> Option<String> {
    let list = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    let frameworks = [
        list(state, "frameworks"),
        list(state, "completed_frameworks"),
    ]
    .concat();
    let framework = frameworks
        .iter()
        .find(|f| f["id"].as_str() == Some(framework_id.as_str()))?;
    let executors = [
        list(framework, "executors"),
        list(framework, "completed_executors"),
    ]
    .concat();
    let runs_task = |e: &Value| {
        e["id"].as_str() == Some(task_id.as_str())
            || ["tasks", "queued_tasks", "completed_tasks"]
                .iter()
                .flat_map(|key| list(e, key))
                .any(|t| t["id"].as_str() == Some(task_id.as_str()))
    };
    // The live run of an executor comes before completed ones.
    let executor = executors.iter().find(|e| runs_task(e))?;
    executor["directory"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_agents_in_both_master_views() {
        let a: AgentId = "M-S1".into();
        let get_agents = json!({"type": "GET_AGENTS", "get_agents": {"agents": [
            {"agent_info": {"id": {"value": "M-S0"}, "hostname": "h0"}, "pid": "slave(1)@10.0.0.1:5051"},
            {"agent_info": {"id": {"value": "M-S1"}, "hostname": "h1", "port": 5052}}
        ]}});
        assert_eq!(
            agent_in_get_agents(&get_agents, &a).as_deref(),
            Some("h1:5052")
        );
        let state =
            json!({"slaves": [{"id": "M-S1", "pid": "slave(1)@10.0.0.2:5051", "hostname": "h1"}]});
        assert_eq!(
            agent_in_v0_state(&state, &a).as_deref(),
            Some("10.0.0.2:5051")
        );
        assert_eq!(agent_in_v0_state(&state, &"zz".into()), None);
    }

    #[test]
    fn finds_sandboxes_by_executor_or_task() {
        let state = json!({
            "frameworks": [{"id": "F", "executors": [
                {"id": "other", "directory": "/a", "tasks": [{"id": "t2"}]},
                {"id": "t1", "directory": "/b"}
            ]}],
            "completed_frameworks": [{"id": "G", "completed_executors": [
                {"id": "x", "directory": "/c", "completed_tasks": [{"id": "t9"}]}
            ]}]
        });
        let find = |f: &str, t: &str| directory_in_agent_state(&state, &f.into(), &t.into());
        assert_eq!(find("F", "t1").as_deref(), Some("/b"));
        assert_eq!(find("F", "t2").as_deref(), Some("/a"));
        assert_eq!(find("G", "t9").as_deref(), Some("/c"));
        assert_eq!(find("F", "t9"), None);
    }
}
