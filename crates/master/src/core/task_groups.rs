//! LAUNCH_GROUP's own checks, as Mesos's `validation::task::group` makes them, besides
//! those every task gets: each task has a command (the default executor runs it), no
//! Docker container and no executor other than the group's; the group's executor is of
//! type DEFAULT (the only kind Meseta runs task groups with) without a command or a Docker
//! container, for this framework, with at least 0.01 cpus, 32 MB of memory and some disk.

use meseta_api::{ExecutorInfo, ExecutorType, FrameworkId, TaskInfo};

/// The least an executor of a task group may ask for (Mesos's `MIN_CPUS`, `MIN_MEM`).
const MIN_CPUS: f64 = 0.01;
const MIN_MEM_MB: f64 = 32.0;

/// What is wrong with a task of a group run by `executor`, if anything.
pub(super) fn task_error(task: &TaskInfo, executor: &ExecutorInfo) -> Option<String> {
    if let Some(own) = &task.executor {
        let same = ExecutorInfo {
            framework_id: executor.framework_id.clone(),
            ..own.clone()
        };
        if &same != executor {
            return Some(format!(
                "The `ExecutorInfo` of task '{}' is different from executor '{}'",
                task.task_id, executor.executor_id
            ));
        }
    }
    let invalid = |why: &str| Some(format!("Task '{}' is invalid: {why}", task.task_id));
    if task.command.is_none() {
        return invalid("'TaskInfo.command' must be set: the default executor runs it");
    }
    if is_docker(task.container.as_ref()) {
        return invalid("Docker ContainerInfo is not supported on the task");
    }
    None
}

/// What is wrong with the executor of a task group of `framework_id`, if anything.
pub(super) fn executor_error(
    executor: &ExecutorInfo,
    framework_id: &FrameworkId,
) -> Option<String> {
    let id = &executor.executor_id;
    match executor.kind {
        None => return Some("'ExecutorInfo.type' must be set".into()),
        Some(ExecutorType::Unknown) => return Some("Unknown executor type".into()),
        Some(ExecutorType::Custom) => {
            return Some(
                "'ExecutorInfo.type' must be 'DEFAULT': task groups run with the default executor"
                    .into(),
            )
        }
        Some(ExecutorType::Default) => {}
    }
    if executor.command.is_some() {
        return Some("'ExecutorInfo.command' must not be set for 'DEFAULT' executor".into());
    }
    if let Some(actual) = executor
        .framework_id
        .as_ref()
        .filter(|f| *f != framework_id)
    {
        return Some(format!(
            "ExecutorInfo has an invalid FrameworkID (Actual: {actual} vs Expected: {framework_id})"
        ));
    }
    if is_docker(executor.container.as_ref()) {
        return Some("Docker ContainerInfo is not supported on the executor".into());
    }
    // How much of a scalar the executor asks for; `None` when it names none.
    let amount = |name: &str| {
        let found: Vec<f64> = (executor.resources.iter().filter(|r| r.name == name))
            .map(|r| r.scalar.as_ref().map_or(0.0, |s| s.value))
            .collect();
        (!found.is_empty()).then(|| found.iter().sum::<f64>())
    };
    let shown = |v: Option<f64>, unit: &str| v.map_or("None".to_string(), |v| format!("{v}{unit}"));
    match amount("cpus") {
        Some(cpus) if cpus >= MIN_CPUS => {}
        cpus => {
            return Some(format!(
                "Executor '{id}' uses less CPUs ({}) than the minimum required ({MIN_CPUS})",
                shown(cpus, "")
            ))
        }
    }
    match amount("mem") {
        Some(mem) if mem >= MIN_MEM_MB => {}
        mem => {
            return Some(format!(
                "Executor '{id}' uses less memory ({}) than the minimum required ({MIN_MEM_MB}MB)",
                shown(mem, "MB")
            ))
        }
    }
    if amount("disk").is_none() {
        return Some(format!("Executor '{id}' uses no disk"));
    }
    None
}

fn is_docker(container: Option<&serde_json::Value>) -> bool {
    container
        .and_then(|c| c.get("type"))
        .and_then(|t| t.as_str())
        == Some("DOCKER")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn executor(extra: serde_json::Value) -> ExecutorInfo {
        let mut base = json!({"type": "DEFAULT", "executor_id": {"value": "g"},
            "framework_id": {"value": "F"},
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                {"name": "disk", "type": "SCALAR", "scalar": {"value": 10}}]});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn task(extra: serde_json::Value) -> TaskInfo {
        let mut base = json!({"name": "t", "task_id": {"value": "t"}, "agent_id": {"value": "A"},
            "command": {"value": "true"}});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn fid() -> FrameworkId {
        FrameworkId::new("F")
    }

    #[test]
    fn the_executor_must_be_a_default_one_with_enough_resources() {
        assert_eq!(executor_error(&executor(json!({})), &fid()), None);
        let error = |extra| executor_error(&executor(extra), &fid()).unwrap();
        assert_eq!(
            error(json!({"type": "CUSTOM", "command": {"value": "x"}})),
            "'ExecutorInfo.type' must be 'DEFAULT': task groups run with the default executor"
        );
        let mut untyped = executor(json!({}));
        untyped.kind = None;
        assert_eq!(
            executor_error(&untyped, &fid()).unwrap(),
            "'ExecutorInfo.type' must be set"
        );
        assert!(error(json!({"command": {"value": "x"}})).contains("must not be set"));
        assert!(error(json!({"framework_id": {"value": "other"}})).contains("invalid FrameworkID"));
        assert!(error(json!({"container": {"type": "DOCKER"}})).contains("Docker"));
        assert_eq!(
            error(json!({"resources": []})),
            "Executor 'g' uses less CPUs (None) than the minimum required (0.01)"
        );
        assert_eq!(
            error(json!({"resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": 16}}]})),
            "Executor 'g' uses less memory (16MB) than the minimum required (32MB)"
        );
        assert_eq!(
            error(json!({"resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]})),
            "Executor 'g' uses no disk"
        );
    }

    #[test]
    fn tasks_need_a_command_and_no_executor_of_their_own() {
        let group = executor(json!({}));
        assert_eq!(task_error(&task(json!({})), &group), None);
        let mut same = task(json!({}));
        same.executor = Some(ExecutorInfo {
            framework_id: None,
            ..group.clone()
        });
        assert_eq!(task_error(&same, &group), None, "the group's own executor");
        let other = task(json!({"executor": {"executor_id": {"value": "x"},
            "command": {"value": "./run"}}}));
        assert_eq!(
            task_error(&other, &group).unwrap(),
            "The `ExecutorInfo` of task 't' is different from executor 'g'"
        );
        let mut bare = task(json!({}));
        bare.command = None;
        assert!(task_error(&bare, &group)
            .unwrap()
            .starts_with("Task 't' is invalid: 'TaskInfo.command' must be set"));
        let docker = task(json!({"container": {"type": "DOCKER"}}));
        assert!(task_error(&docker, &group).unwrap().contains("Docker"));
    }
}
