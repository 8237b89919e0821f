//! `docker/runtime`: what an image's config (Entrypoint, Cmd, Env, WorkingDir) makes of a
//! command, decided as Mesos's docker runtime isolator decides it. Pure.
//!
//! - `shell: true` runs `/bin/sh -c value`; the image's Entrypoint and Cmd are ignored.
//! - `shell: false` with a `value` runs `value` with `arguments` as its argv; Entrypoint
//!   and Cmd are ignored.
//! - `shell: false` without a `value` ([`Program::Image`]) runs the Entrypoint followed by
//!   the `arguments` when there are some, else by Cmd; without an Entrypoint, `Cmd[0]`
//!   followed by the `arguments`, else by the rest of Cmd. With neither there is nothing
//!   to run.
//! - A command task's environment is the executor's with the image's Env over it (the
//!   task's own variables go over both); its working directory is the image's WorkingDir
//!   when it has one, else the sandbox.
//! - The image's User is not applied (Mesos logs a warning and runs the task as the task's
//!   or framework's user); [`ignored_user`] says when that happens.
//!
//! The command executor learns its image's config from [`IMAGE_RUNTIME_VAR`], which the
//! Linux launcher sets (JSON of [`ImageConfig`]) when it runs it in an image with
//! `docker/runtime`.

use crate::launcher::{ImageConfig, Program};
use meseta_api::CommandInfo;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The variable that carries the image's config to the command executor.
pub const IMAGE_RUNTIME_VAR: &str = "MESETA_IMAGE_RUNTIME";

/// The shell that shell commands run with.
const SHELL: &str = "/bin/sh";

/// Why a command has nothing to run.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RuntimeError {
    /// `shell: false` without a `value`, and no image (with `docker/runtime`) to say what to
    /// run.
    #[error("the command has no 'value' (shell: false) and no image Entrypoint or Cmd applies (an image and the docker/runtime isolator give them)")]
    NoImage,
    /// `shell: false` without a `value`, and an image without Entrypoint or Cmd.
    #[error("no executable: the command has no 'value' (shell: false) and the image has neither Entrypoint nor Cmd")]
    NoExecutable,
}

/// A process to execute: `path` with `argv` (`argv[0]` included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    pub path: String,
    pub argv: Vec<String>,
}

impl From<&CommandInfo> for Program {
    /// What a `CommandInfo` asks to run (an absent shell value is the empty command).
    fn from(command: &CommandInfo) -> Program {
        match (&command.value, command.shell) {
            (value, true) => Program::Shell(value.clone().unwrap_or_default()),
            (Some(path), false) => Program::Argv {
                path: path.clone(),
                args: match command.arguments.is_empty() {
                    true => vec![path.clone()],
                    false => command.arguments.clone(),
                },
            },
            (None, false) => Program::Image {
                arguments: command.arguments.clone(),
            },
        }
    }
}

/// What `program` executes; `image` is the image's config when `docker/runtime` applies.
pub fn exec(program: &Program, image: Option<&ImageConfig>) -> Result<Exec, RuntimeError> {
    match program {
        Program::Shell(command) => Ok(Exec {
            path: SHELL.into(),
            argv: vec!["sh".into(), "-c".into(), command.clone()],
        }),
        Program::Argv { path, args } => Ok(Exec {
            path: path.clone(),
            argv: args.clone(),
        }),
        Program::Image { arguments } => {
            let image = image.ok_or(RuntimeError::NoImage)?;
            // What runs first, and what follows it when the task gives no arguments.
            let (program, defaults) = match image.cmd.split_first() {
                _ if !image.entrypoint.is_empty() => (&image.entrypoint[..], &image.cmd[..]),
                Some((_, rest)) => (&image.cmd[..1], rest),
                None => return Err(RuntimeError::NoExecutable),
            };
            let tail = match arguments.is_empty() {
                true => defaults,
                false => &arguments[..],
            };
            Ok(Exec {
                path: program[0].clone(),
                argv: program.iter().chain(tail).cloned().collect(),
            })
        }
    }
}

/// The image's Env as `(name, value)` pairs; entries without `=` are skipped (as Mesos).
pub fn image_env(image: &ImageConfig) -> Vec<(String, String)> {
    image
        .env
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The image's User when there is one: it is not applied (see the module doc).
pub fn ignored_user(image: &ImageConfig) -> Option<&str> {
    image.user.as_deref()
}

/// How a command task runs in its image.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskLaunch {
    /// The task's command, with the image's Entrypoint or Cmd as its `value` and
    /// `arguments` when it had no `value`; otherwise the task's own.
    pub command: CommandInfo,
    /// The environment the task's own variables go over: `base` with the image's Env
    /// over it.
    pub environment: Vec<(String, String)>,
    /// The image's WorkingDir, else the sandbox.
    pub working_dir: PathBuf,
}

/// Applies `image` to a command task whose command executor runs with `base` as its
/// environment in `sandbox`.
pub fn command_task(
    command: &CommandInfo,
    base: &[(String, String)],
    sandbox: &Path,
    image: &ImageConfig,
) -> Result<TaskLaunch, RuntimeError> {
    let command = match Program::from(command) {
        program @ Program::Image { .. } => {
            let exec = exec(&program, Some(image))?;
            CommandInfo {
                shell: false,
                value: Some(exec.path),
                arguments: exec.argv,
                ..command.clone()
            }
        }
        Program::Shell(_) | Program::Argv { .. } => command.clone(),
    };
    let mut environment = base.to_vec();
    for (name, value) in image_env(image) {
        environment.retain(|(k, _)| *k != name);
        environment.push((name, value));
    }
    let working_dir = image
        .working_dir
        .as_ref()
        .map_or_else(|| sandbox.to_path_buf(), PathBuf::from);
    Ok(TaskLaunch {
        command,
        environment,
        working_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn command(shell: bool, value: Option<&str>, arguments: &[&str]) -> CommandInfo {
        let mut c: CommandInfo = serde_json::from_value(json!({"shell": shell})).unwrap();
        c.value = value.map(str::to_string);
        c.arguments = arguments.iter().map(|s| s.to_string()).collect();
        c
    }

    fn exec_of(c: &CommandInfo, image: &ImageConfig) -> Result<Exec, RuntimeError> {
        exec(&Program::from(c), Some(image))
    }

    fn argv(path: &str, argv: &[&str]) -> Result<Exec, RuntimeError> {
        Ok(Exec {
            path: path.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Mesos's table: every combination of shell, value and arguments against every
    /// combination of Entrypoint and Cmd.
    #[test]
    fn the_launch_command_follows_mesos_table() {
        let none = image(&[], &[]);
        let cmd = image(&[], &["/c", "c1"]);
        let entry = image(&["/e", "e1"], &[]);
        let both = image(&["/e", "e1"], &["c1", "c2"]);
        // shell=0 value=0 argv=0
        let c = command(false, None, &[]);
        assert_eq!(exec_of(&c, &none), Err(RuntimeError::NoExecutable));
        assert_eq!(exec_of(&c, &cmd), argv("/c", &["/c", "c1"]));
        assert_eq!(exec_of(&c, &entry), argv("/e", &["/e", "e1"]));
        assert_eq!(exec_of(&c, &both), argv("/e", &["/e", "e1", "c1", "c2"]));
        // shell=0 value=0 argv=1: the arguments replace Cmd (after Cmd[0] without an
        // Entrypoint).
        let c = command(false, None, &["a1", "a2"]);
        assert_eq!(exec_of(&c, &none), Err(RuntimeError::NoExecutable));
        assert_eq!(exec_of(&c, &cmd), argv("/c", &["/c", "a1", "a2"]));
        assert_eq!(exec_of(&c, &entry), argv("/e", &["/e", "e1", "a1", "a2"]));
        assert_eq!(exec_of(&c, &both), argv("/e", &["/e", "e1", "a1", "a2"]));
        // shell=0 value=1: the value runs, with the arguments as its argv (or itself).
        for i in [&none, &cmd, &entry, &both] {
            let c = command(false, Some("/v"), &[]);
            assert_eq!(exec_of(&c, i), argv("/v", &["/v"]));
            let c = command(false, Some("/v"), &["v", "a1"]);
            assert_eq!(exec_of(&c, i), argv("/v", &["v", "a1"]));
        }
        // shell=1 value=1: sh -c value, arguments or not.
        for i in [&none, &cmd, &entry, &both] {
            for args in [&[][..], &["a1"][..]] {
                let c = command(true, Some("echo hi"), args);
                assert_eq!(exec_of(&c, i), argv("/bin/sh", &["sh", "-c", "echo hi"]));
            }
        }
    }

    #[test]
    fn nothing_to_run_without_an_image() {
        let c = command(false, None, &["a1"]);
        assert_eq!(exec(&Program::from(&c), None), Err(RuntimeError::NoImage));
        let c = command(false, Some("/v"), &[]);
        assert_eq!(exec(&Program::from(&c), None), argv("/v", &["/v"]));
        assert!(RuntimeError::NoExecutable
            .to_string()
            .contains("neither Entrypoint nor Cmd"));
    }

    #[test]
    fn a_command_task_gets_the_image_command_env_and_working_dir() {
        let mut i = image(&["/bin/echo", "entry"], &["cmd"]);
        i.env = vec!["PATH=/bin".into(), "FROM=image".into(), "BROKEN".into()];
        i.working_dir = Some("/work".into());
        i.user = Some("1000".into());
        let base = vec![
            ("PATH".to_string(), "/usr/bin".to_string()),
            (
                "MESOS_SANDBOX".to_string(),
                "/mnt/mesos/sandbox".to_string(),
            ),
        ];
        let sandbox = Path::new("/mnt/mesos/sandbox");
        let mut c = command(false, None, &[]);
        c.user = Some("alice".into());
        let t = command_task(&c, &base, sandbox, &i).unwrap();
        assert!(!t.command.shell);
        assert_eq!(t.command.value.as_deref(), Some("/bin/echo"));
        assert_eq!(t.command.arguments, ["/bin/echo", "entry", "cmd"]);
        assert_eq!(t.command.user.as_deref(), Some("alice"), "the rest is kept");
        assert_eq!(
            t.environment,
            [
                (
                    "MESOS_SANDBOX".to_string(),
                    "/mnt/mesos/sandbox".to_string()
                ),
                ("PATH".to_string(), "/bin".to_string()),
                ("FROM".to_string(), "image".to_string()),
            ],
            "the image's Env over the executor's, invalid entries skipped"
        );
        assert_eq!(t.working_dir, Path::new("/work"));
        assert_eq!(ignored_user(&i), Some("1000"));

        // A shell command is kept as it is; no WorkingDir leaves the sandbox.
        i.working_dir = None;
        let shell = command(true, Some("pwd"), &[]);
        let t = command_task(&shell, &base, sandbox, &i).unwrap();
        assert_eq!(t.command, shell);
        assert_eq!(t.working_dir, sandbox);
        // No Entrypoint nor Cmd: an error.
        let empty = ImageConfig::default();
        assert_eq!(
            command_task(&c, &base, sandbox, &empty),
            Err(RuntimeError::NoExecutable)
        );
        assert_eq!(ignored_user(&empty), None);
    }
}
