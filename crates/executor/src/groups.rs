//! The default executor's task groups and Mesos's policy for them: when a task of a group
//! ends TASK_FAILED or TASK_KILLED (a non-zero exit, a KILL, a failed health check, its
//! maximum completion time) outside a shutdown, the group's other live tasks are killed,
//! once per group; a task that finishes leaves the others running. A group whose tasks
//! have all ended is forgotten.

use meseta_api::{TaskId, TaskState};
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
struct Group {
    tasks: Vec<TaskId>,
    ended: BTreeSet<TaskId>,
    /// The group is being killed (a member failed or was killed).
    killing: bool,
}

/// The task groups an executor runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Groups {
    groups: Vec<Group>,
}

impl Groups {
    /// A LAUNCH_GROUP's tasks.
    pub fn add(&mut self, tasks: Vec<TaskId>) {
        self.groups.push(Group {
            tasks,
            ended: BTreeSet::new(),
            killing: false,
        });
    }

    /// `task` ended in `state`; returns the other tasks of its group to kill (those that
    /// have not ended).
    pub fn ended(&mut self, task: &TaskId, state: TaskState, shutting_down: bool) -> Vec<TaskId> {
        let Some(index) = self.groups.iter().position(|g| g.tasks.contains(task)) else {
            return Vec::new();
        };
        let group = &mut self.groups[index];
        group.ended.insert(task.clone());
        let fails_group = matches!(state, TaskState::TaskFailed | TaskState::TaskKilled);
        let doomed = if fails_group && !shutting_down && !group.killing {
            group.killing = true;
            group
                .tasks
                .iter()
                .filter(|t| !group.ended.contains(*t))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if group.ended.len() == group.tasks.len() {
            self.groups.remove(index);
        }
        doomed
    }

    /// How many groups still have a task that has not ended.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<TaskId> {
        names.iter().map(|n| TaskId::new(*n)).collect()
    }

    #[test]
    fn a_finished_task_leaves_its_group_running() {
        let mut g = Groups::default();
        g.add(ids(&["a", "b"]));
        assert!(g
            .ended(&TaskId::new("a"), TaskState::TaskFinished, false)
            .is_empty());
        assert!(g
            .ended(&TaskId::new("b"), TaskState::TaskFinished, false)
            .is_empty());
        assert_eq!(g.len(), 0, "a group whose tasks all ended is forgotten");
    }

    #[test]
    fn a_failed_or_killed_task_kills_the_rest_of_its_group_once() {
        for state in [TaskState::TaskFailed, TaskState::TaskKilled] {
            let mut g = Groups::default();
            g.add(ids(&["a", "b", "c"]));
            g.add(ids(&["x"]));
            assert!(g
                .ended(&TaskId::new("a"), TaskState::TaskFinished, false)
                .is_empty());
            assert_eq!(g.ended(&TaskId::new("b"), state, false), ids(&["c"]));
            assert!(
                g.ended(&TaskId::new("c"), TaskState::TaskKilled, false)
                    .is_empty(),
                "the group is already being killed"
            );
            assert_eq!(g.len(), 1, "the other group is untouched");
        }
    }

    #[test]
    fn nothing_is_killed_during_a_shutdown_or_for_unknown_tasks() {
        let mut g = Groups::default();
        g.add(ids(&["a", "b"]));
        assert!(g
            .ended(&TaskId::new("a"), TaskState::TaskKilled, true)
            .is_empty());
        assert!(g
            .ended(&TaskId::new("zz"), TaskState::TaskFailed, false)
            .is_empty());
        assert_eq!(g.len(), 1);
    }
}
